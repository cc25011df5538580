import Chargers
import Foundation

/// A part of the appliance that reads topics on the building's broker: the meters, the
/// chargers behind MQTT gateways. The broker connection (`PanelService` owns it, with the
/// panels' topics) subscribes to their topics and hands each message to the part that
/// asked for it; it does not know what a meter is.
public protocol BrokerInput: Sendable {
  /// The topics (exact names) this part reads.
  var inputTopics: [String] { get }
  /// One message on one of them, from the MQTT network thread: return quickly. Returns
  /// what was wrong with it (one line each, naming topic and field); empty if it was used.
  func receive(topic: String, payload: [UInt8]) -> [String]
}

extension MeterInputs: BrokerInput {
  public var inputTopics: [String] { topics }

  public func receive(topic: String, payload: [UInt8]) -> [String] {
    ingest(topic: topic, payload: payload).map(\.description)
  }
}

/// The chargers behind MQTT gateways, as one broker input: their state topics in.
public struct MQTTChargerInputs: BrokerInput {
  private let byTopic: [String: MQTTCharger]

  public init(_ chargers: [MQTTCharger]) {
    byTopic = Dictionary(chargers.map { ($0.stateTopic, $0) }, uniquingKeysWith: { a, _ in a })
  }

  public var inputTopics: [String] { byTopic.keys.sorted() }

  public func receive(topic: String, payload: [UInt8]) -> [String] {
    byTopic[topic]?.ingest(payload: payload, now: Date()) ?? []
  }
}
