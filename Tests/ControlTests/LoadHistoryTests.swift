import Control
import Testing

@Suite("Load history: the forecast is last week's load, corrected by today's")
struct LoadHistoryTests {
  let L = 900.0  // 15-minute intervals
  var week: Int { Int(7 * 86_400 / L) }

  /// Records one value per interval for intervals `range`, a minute at a time.
  func record(_ history: inout LoadHistory, _ range: Range<Int>, value: (Int) -> Double) {
    for i in range {
      for m in 0..<15 { history.record(time: Double(i) * L + Double(m) * 60, demandKW: value(i), periodSeconds: 60) }
    }
  }

  @Test("the forecast is the same interval a week earlier, and there is none before a week is seen")
  func sameTimeLastWeek() {
    var history = LoadHistory(intervalSeconds: L)
    record(&history, 0..<(week - 1)) { Double($0) }
    #expect(history.forecast(intervalsAhead: 1) == nil)
    record(&history, (week - 1)..<(week + 10)) { Double($0) }
    // Under way: interval week + 9; one ahead is week + 10, a week before that is 10.
    #expect(history.forecast(intervalsAhead: 1) == 10)
    #expect(history.forecast(intervalsAhead: 5) == 14)
    #expect(history.value(intervalsAgo: 1) == Double(week + 8))
  }

  @Test("a day running above last week lifts the forecast for the next hours, fading")
  func correctedByTheLastHour() {
    var history = LoadHistory(intervalSeconds: L)
    record(&history, 0..<week) { _ in 100 }
    record(&history, week..<(week + 8)) { _ in 150 }  // two hours at 1.5 times last week
    #expect(abs(history.recentRatio(window: 4) - 1.5) < 1e-9)
    let series = history.forecastSeries(count: 96, correctionHours: 12)
    #expect(series.count == 96)
    #expect(series[0] > 145 && series[0] < 150)
    #expect(series[95] > 100 && series[95] < series[0], "the correction fades over the day")
  }

  @Test("a clock that jumps ahead keeps 'a week ago' a week ago; one that jumps back does no harm")
  func clockJumps() {
    var history = LoadHistory(intervalSeconds: L)
    record(&history, 0..<(week + 20)) { Double($0) }
    // The clock skips ten intervals.
    record(&history, (week + 30)..<(week + 32)) { Double($0) }
    // Under way: week + 31; one ahead is week + 32, a week before that is 32.
    #expect(history.forecast(intervalsAhead: 1) == 32)
    // And back an hour: a new interval, no crash, the history is still there.
    record(&history, (week + 27)..<(week + 28)) { Double($0) }
    #expect(history.forecast(intervalsAhead: 1) != nil)
    #expect(history.peakKW >= Double(week + 31))
  }
}
