import Glibc

/// The http-level settings, resolved from directives and, where a directive
/// is absent, from the environment nginx was started with.
public struct Configuration: Equatable {
    public var enabled: Bool
    public var path: String
    public var expiration: Int64
    public var maxSessions: Int64 = Configuration.defaultMaxSessions

    public static let defaultExpiration: Int64 = 1200
    /// Ten years: long enough for any session, short enough for every clock.
    public static let maxExpiration: Int64 = 315_360_000
    /// Live sessions at most, unless `sagemaker_sessions_max` says otherwise:
    /// about 200 MB of tmpfs and kernel memory.
    public static let defaultMaxSessions: Int64 = 100_000
    public static let enableVariable = "SAGEMAKER_ENABLE_STATEFUL_SESSIONS"
    public static let pathVariable = "SAGEMAKER_SESSIONS_PATH"
    public static let expirationVariable = "SAGEMAKER_SESSIONS_EXPIRATION"

    /// What directives said; nil where nothing was written.
    public struct Directives: Equatable {
        public var enabled: Bool?
        public var path: String?
        public var expiration: Int64?
        public var maxSessions: Int64?

        public init(enabled: Bool? = nil, path: String? = nil, expiration: Int64? = nil, maxSessions: Int64? = nil) {
            self.enabled = enabled
            self.path = path
            self.expiration = expiration
            self.maxSessions = maxSessions
        }
    }

    public struct Invalid: Error, Equatable, CustomStringConvertible {
        public let description: String
    }

    /// The Python library's reading: `true` or `1`, in any case, means on.
    public static func parseFlag(_ text: String) -> Bool {
        let lower = String(text.unicodeScalars.map { $0.properties.lowercaseMapping }.joined())
        return lower == "true" || lower == "1"
    }

    /// Whole seconds, greater than zero.
    public static func parseExpiration(_ text: String) -> Int64? {
        let trimmed = text.trimmingBlanks()
        guard let value = Int64(trimmed), value > 0, value <= maxExpiration else { return nil }
        return value
    }

    public static func resolve(_ directives: Directives,
                               environment: (String) -> String? = Configuration.processEnvironment,
                               shmUsable: () -> Bool = { access("/dev/shm", R_OK | W_OK) == 0 }) throws(Invalid) -> Configuration {
        let enabled = directives.enabled ?? environment(enableVariable).map(parseFlag) ?? false

        var expiration = defaultExpiration
        if let value = directives.expiration {
            guard value > 0, value <= maxExpiration else {
                throw Invalid(description: "\"sagemaker_sessions_expiration\" must be between 1 second and 10 years, not \(value) s")
            }
            expiration = value
        } else if let text = environment(expirationVariable) {
            guard let value = parseExpiration(text) else {
                throw Invalid(description: "\(expirationVariable)=\"\(text)\" is not a whole number of seconds between 1 and \(maxExpiration) (10 years)")
            }
            expiration = value
        }

        let path: String
        if let value = directives.path {
            path = value
        } else if let value = environment(pathVariable) {
            guard !value.isEmpty else { throw Invalid(description: "\(pathVariable) is empty") }
            guard value.hasPrefix("/") else {
                throw Invalid(description: "\(pathVariable)=\"\(value)\" is not an absolute path")
            }
            path = value
        } else {
            path = shmUsable() ? "/dev/shm/sagemaker_sessions" : fallbackPath(environment)
        }
        let maxSessions = directives.maxSessions ?? defaultMaxSessions
        guard maxSessions > 0 else {
            throw Invalid(description: "\"sagemaker_sessions_max\" must be greater than zero")
        }
        return Configuration(enabled: enabled, path: normalized(path), expiration: expiration, maxSessions: maxSessions)
    }

    /// Where sessions go when the chosen directory is not usable: the
    /// temporary directory, as the Python library does.
    public static func fallbackPath(_ environment: (String) -> String? = Configuration.processEnvironment) -> String {
        var tmp = environment("TMPDIR") ?? "/tmp"
        if tmp.isEmpty || !tmp.hasPrefix("/") { tmp = "/tmp" }
        return normalized(tmp + "/sagemaker_sessions")
    }

    static func normalized(_ path: String) -> String {
        var out = ""
        var lastSlash = false
        for c in path {
            if c == "/" {
                if lastSlash { continue }
                lastSlash = true
            } else {
                lastSlash = false
            }
            out.append(c)
        }
        while out.count > 1, out.hasSuffix("/") { out.removeLast() }
        return out
    }

    public static func processEnvironment(_ name: String) -> String? {
        getenv(name).map { String(cString: $0) }
    }

    /// Creates the sessions directory and proves it usable; on failure falls
    /// back to the temporary directory, and reports the fallback.
    public func prepareDirectory(fallback: String = Configuration.fallbackPath()) throws(Invalid) -> (path: String, warning: String?) {
        do {
            try Configuration.makeUsable(path)
            return (path, nil)
        } catch let first {
            let warning = "sessions path \"\(path)\" is not usable (\(first)), falling back to \"\(fallback)\""
            do {
                try Configuration.makeUsable(fallback)
            } catch {
                throw Invalid(description: "sessions path \"\(path)\" is not usable (\(first)), nor is the fallback \"\(fallback)\" (\(error))")
            }
            return (fallback, warning)
        }
    }

    static func makeUsable(_ path: String) throws(SystemError) {
        try FileSystem.makeDirectories(path)
        if access(path, R_OK | W_OK | X_OK) != 0 { throw .current }
    }
}

extension String {
    func trimmingBlanks() -> Substring {
        var s = Substring(self)
        while let f = s.first, f == " " || f == "\t" || f == "\n" || f == "\r" { s.removeFirst() }
        while let l = s.last, l == " " || l == "\t" || l == "\n" || l == "\r" { s.removeLast() }
        return s
    }
}
