import IMCore
import Testing

@Suite struct WordFilterTests {
    @Test func matchesIgnoringCaseInsideWordsAndChineseText() {
        let f = WordFilter(fileText: "# a comment\n\nBadWord\n违禁词\n  spam  \n")
        #expect(f.words.count == 3)
        #expect(f.firstMatch(in: "this is a BADWORD here") == "badword")
        #expect(f.firstMatch(in: "这里有违禁词吗") == "违禁词")
        #expect(f.firstMatch(in: "antispammer") == "spam", "substrings match: Chinese has no spaces to split on")
        #expect(f.firstMatch(in: "clean text") == nil)
        #expect(WordFilter([]).firstMatch(in: "anything") == nil)
    }

    @Test func masksEveryMatchCharacterForCharacterKeepingTheRest() {
        let f = WordFilter(["spam", "spammer", "违禁"])
        #expect(f.masked("Spammer sends spam, 违禁内容") == "******* sends ****, **内容", "the longest word wins")
        #expect(f.masked("nothing here") == "nothing here")
        #expect(f.masked("👍spam👍") == "👍****👍")
    }
}
