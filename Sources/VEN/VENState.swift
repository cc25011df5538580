/// What the VEN keeps across restarts (in the appliance's state store): its registration
/// with the VTN, the events it knows with the answers it gave, and the reports the VTN
/// asked for. A restart carries on from here: the events are followed at once, even if
/// the VTN cannot be reached.
public struct VENState: Sendable, Hashable, Codable {
  public struct Registration: Sendable, Hashable, Codable {
    public var venID: String
    public var registrationID: String
    public var vtnID: String?
    /// What the VTN asked for (oadrRequestedOadrPollFreq), seconds.
    public var requestedPollSeconds: Double?
  }

  /// A report the VTN asked for (oadrCreateReport, or a request in oadrRegisteredReport).
  public struct ReportSubscription: Sendable, Hashable, Codable {
    public var reportRequestID: String
    public var reportSpecifierID: String
    /// The length of each interval in a report, seconds (0: one value per report).
    public var granularitySeconds: Double
    /// How often a report is sent, seconds.
    public var reportBackSeconds: Double
    public var rIDs: [String]
    /// The end of the last interval sent, UTC.
    public var sentThrough: Double
    /// When the VTN wants reports to stop, UTC (nil: until cancelled).
    public var until: Double?
  }

  public var registration: Registration?
  /// The venID the VTN gave, kept after a cancelled registration so that the VEN comes
  /// back as the same party.
  public var venID: String?
  public var book = EventBook()
  public var reports: [ReportSubscription] = []
  /// The VEN's reports were registered with the VTN for this registration.
  public var reportsRegistered = false

  public init() {}
}
