/// The default body of a request to an engine's session handler, written as
/// the Python library's `SAGEMAKER_TRANSFORMS_*_SESSION_DEFAULTS`: a JSON
/// object of `"body.<path>": value`, e.g. `{"body.capacity": 1024}` for the
/// body `{"capacity": 1024}`.
public struct SessionDefaults {
    let template: JSON

    public struct Invalid: Error, Equatable, CustomStringConvertible {
        public let description: String
    }

    /// `{}`: no defaults. nil only when out of memory.
    public static var empty: SessionDefaults? {
        JSON.object().map(SessionDefaults.init(template:))
    }

    init(template: JSON) {
        self.template = template
    }

    public init(parsing text: String) throws(Invalid) {
        let (parsed, reason) = JSON.parseExplained(text)
        guard let parsed else { throw Invalid(description: "invalid JSON: \(reason)") }
        guard parsed.isObject else { throw Invalid(description: "a JSON object of \"body.<path>\": value is required") }
        guard let body = JSON.object() else { throw Invalid(description: "out of memory") }
        for key in parsed.keys {
            let path: JSONPath
            do {
                path = try HandlerPath.request(key)
            } catch {
                throw Invalid(description: "key \"\(key)\": \(error)")
            }
            guard let value = parsed[key] else { continue }
            do {
                try path.set(value, in: body)
            } catch {
                throw Invalid(description: "key \"\(key)\" conflicts with another key")
            }
        }
        template = body
    }

    /// A fresh body for one request.
    public func body() -> JSON? {
        template.deepCopy()
    }
}
