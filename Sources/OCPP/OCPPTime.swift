import Foundation

/// OCPP's date-times: RFC 3339 in UTC with milliseconds on the way out; on the way in any
/// offset, with or without fractional seconds (charge points differ; the fraction is
/// dropped, a second is fine for departures and meter values).
public enum OCPPTime {
  private static let style = Date.ISO8601FormatStyle.iso8601.year().month().day().dateSeparator(.dash)
    .time(includingFractionalSeconds: true).timeSeparator(.colon).timeZone(separator: .omitted)

  public static func format(_ date: Date) -> String { date.formatted(style) }

  public static func parse(_ text: String) -> Date? { try? Date(text, strategy: .iso8601) }
}
