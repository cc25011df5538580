import Foundation
import Testing

@testable import Appliance

/// The VEN computes an event's status when it polls, up to a poll interval before the panel
/// state goes out; panels must see the status at the state's own time.
@Suite("Panel state: an OpenADR event's status is told at the state's time")
struct PanelOpenADRTests {
  let start = Date(timeIntervalSince1970: 1_780_000_000)

  func view(status: String) -> SiteStatus.OpenADRView {
    SiteStatus.OpenADRView(
      link: "registered", venID: "VEN-1", vtnID: "VTN", lastContact: start, lastError: nil,
      events: [
        .init(
          id: "ev-1", modificationNumber: 0, status: status, start: start, end: start + 3600, opt: "optIn",
          reason: nil, asks: "SIMPLE level 2", requestedKW: nil, testEvent: false)
      ])
  }

  func shownStatus(_ status: String, at offset: TimeInterval) -> String? {
    let body = PanelJSON.openADRBody(view(status: status), now: start + offset)
    return (body["events"] as? [[String: Any]])?.first?["status"] as? String
  }

  @Test func anEventThatHasBegunShowsActiveBeforeTheVENPollsAgain() {
    #expect(shownStatus("near", at: 0) == "active")
    #expect(shownStatus("far", at: 5) == "active")
    #expect(shownStatus("near", at: -5) == "near", "not begun yet: the VEN's word stands")
  }

  @Test func anEventPastItsEndShowsCompleted() {
    #expect(shownStatus("active", at: 3600) == "completed")
    #expect(shownStatus("active", at: 3599) == "active")
  }

  @Test func theVTNsCancellationIsNeverOverwritten() {
    #expect(shownStatus("cancelled", at: 10) == "cancelled")
    #expect(shownStatus("cancelled", at: 4000) == "cancelled")
  }
}
