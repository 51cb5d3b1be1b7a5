import IMCore
import Testing

/// What a client hears about a frame the server cannot decode (issue 9, items 18 and 19).
@Suite struct FrameDecodingErrorTests {
    func failure(_ text: String) -> ClientFrameDecodingFailure? {
        if case .failure(let f) = FrameCodec.decodeClientFrame(text) { return f }
        return nil
    }

    @Test func anUnknownKindIsInvalidAndKeepsTheCid() {
        let f = failure(#"{"type":"send","cid":"c-1","conv":1,"kind":"bogus","text":"x"}"#)
        #expect(f?.error.code == .invalid)
        #expect(f?.error.message.contains("kind") == true)
        #expect(f?.cid == "c-1")
    }

    @Test func everySendRecallOrEditWithAReadableCidIsAnsweredWithIt() {
        for text in [#"{"type":"send","cid":"a","conv":"one","kind":"text","text":"x"}"#,
                     #"{"type":"send","cid":"a","kind":"text","text":"x"}"#,
                     #"{"type":"recall","cid":"a","conv":1,"seq":1.5}"#,
                     #"{"type":"edit","cid":"a","conv":1,"seq":2,"text":"\ud800"}"#,
                     #"{"cid":"a","type":"send","conv":1.5,"kind":"text","text":"x"}"#] {
            #expect(failure(text)?.cid == "a", "\(text)")
        }
        #expect(failure(#"{"type":"send","cid":7,"conv":1,"kind":"text","text":"x"}"#)?.cid == nil)
        #expect(failure(#"{"type":"typing","cid":"a","conv":"x","active":true}"#)?.cid == nil)
        #expect(FrameCodec.clientID(in: #"{"type":"send","cid":"big","conv":1,"kind":"text","text":"xxxx"}"#) == "big")
    }

    @Test func badFrameNamesTheField() {
        let cases: [(String, String)] = [
            (#"{"type":"send","cid":"a","conv":1.5,"kind":"text","text":"x"}"#, "'conv'"),
            (#"{"type":"send","cid":"a","conv":1,"kind":"text","text":"\ud800"}"#, "'text'"),
            (#"{"type":"send","cid":"a","conv":1,"kind":"text","text":"x\udc00y"}"#, "'text'"),
            (#"{"type":"sync","cursors":{"1":2.5}}"#, "'cursors.1'"),
            (#"{"type":"send","cid":"a","conv":99999999999999999999,"kind":"text","text":"x"}"#, "'conv'"),
        ]
        for (text, field) in cases {
            let f = failure(text)
            #expect(f?.error.code == .badFrame, "\(text): \(String(describing: f))")
            #expect(f?.error.message.contains(field) == true, "\(text): \(String(describing: f?.error.message))")
        }
        // Still the general message for what is not an object at all.
        #expect(failure("[1,2]")?.error.message == "frame is not a JSON object with a 'type'")
        #expect(failure("not json")?.error.code == .badFrame)
    }
}
