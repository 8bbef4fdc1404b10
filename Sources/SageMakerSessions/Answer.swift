/// An HTTP answer the module gives itself, with the line it leaves in the
/// error log.
public struct Answer: Equatable {
    public enum LogLevel: Int32, Equatable {
        case error = 4, warn = 5, notice = 6, info = 7
    }

    public var status: Int
    public var contentType: String
    public var header: (name: String, value: String)?
    public var body: String
    public var log: (level: LogLevel, message: String)?
    /// What became of the request's session (`$sagemaker_session_outcome`).
    public var outcome: SessionOutcome = .none

    public static let sessionIDHeader = "X-Amzn-SageMaker-Session-Id"
    public static let newSessionIDHeader = "X-Amzn-SageMaker-New-Session-Id"
    public static let closedSessionIDHeader = "X-Amzn-SageMaker-Closed-Session-Id"

    static let text = "text/plain; charset=utf-8"
    static let json = "application/json"

    /// `{"detail": ...}`, as FastAPI writes an HTTPException.
    public static func error(_ status: Int, _ detail: String, log: (LogLevel, String)? = nil) -> Answer {
        Answer(status: status, contentType: json, header: nil, body: detailBody(detail), log: log)
    }

    static func detailBody(_ detail: String) -> String {
        guard let object = JSON.object(), let text = JSON.string(detail), object.set("detail", text),
              let body = object.dumped() else { return "{\"detail\":\"Internal Server Error\"}" }
        return body
    }

    public static func == (a: Answer, b: Answer) -> Bool {
        a.status == b.status && a.contentType == b.contentType && a.body == b.body
            && a.header?.name == b.header?.name && a.header?.value == b.header?.value
            && a.log?.level == b.log?.level && a.log?.message == b.log?.message
    }
}
