import Glibc
import XCTest
@testable import SageMakerSessions

final class ConfigurationTests: TempDirectoryTestCase {

    private func env(_ values: [String: String]) -> (String) -> String? {
        { values[$0] }
    }

    private func resolve(_ directives: Configuration.Directives = .init(), env values: [String: String] = [:],
                         shm: Bool = true) throws(Configuration.Invalid) -> Configuration {
        try Configuration.resolve(directives, environment: env(values), shmUsable: { shm })
    }

    private func resolveError(_ directives: Configuration.Directives = .init(), env values: [String: String],
                              file: StaticString = #filePath, line: UInt = #line) -> String? {
        do {
            let config = try resolve(directives, env: values)
            XCTFail("resolved to \(config)", file: file, line: line)
            return nil
        } catch {
            return error.description
        }
    }

    // MARK: parseFlag

    func testParseFlagOn() {
        for text in ["true", "TRUE", "True", "tRuE", "1"] {
            XCTAssertTrue(Configuration.parseFlag(text), text)
        }
    }

    func testParseFlagOff() {
        for text in ["yes", "0", "", "false", "on", "2", " true", "true ", "11", "t"] {
            XCTAssertFalse(Configuration.parseFlag(text), text)
        }
    }

    // MARK: parseExpiration

    func testParseExpirationAccepts() {
        XCTAssertEqual(Configuration.parseExpiration("1200"), 1200)
        XCTAssertEqual(Configuration.parseExpiration("1"), 1)
        XCTAssertEqual(Configuration.parseExpiration(" 30\n"), 30)
    }

    func testParseExpirationRefuses() {
        for text in ["0", "-5", "abc", "1.5", "", "   ", "20m", "1e3", "0x10", "99999999999999999999"] {
            XCTAssertNil(Configuration.parseExpiration(text), text)
        }
    }

    // MARK: resolve

    func testDefaults() throws {
        XCTAssertEqual(try resolve(shm: true),
                       Configuration(enabled: false, path: "/dev/shm/sagemaker_sessions", expiration: 1200))
    }

    func testDefaultPathWithoutSharedMemory() throws {
        XCTAssertEqual(try resolve(env: ["TMPDIR": "/var/tmp/"], shm: false).path, "/var/tmp/sagemaker_sessions")
        XCTAssertEqual(try resolve(shm: false).path, "/tmp/sagemaker_sessions")
        XCTAssertEqual(try resolve(env: ["TMPDIR": ""], shm: false).path, "/tmp/sagemaker_sessions")
        XCTAssertEqual(try resolve(env: ["TMPDIR": "relative"], shm: false).path, "/tmp/sagemaker_sessions")
    }

    func testFallbackPath() {
        XCTAssertEqual(Configuration.fallbackPath(env(["TMPDIR": "/scratch//x/"])), "/scratch/x/sagemaker_sessions")
        XCTAssertEqual(Configuration.fallbackPath(env([:])), "/tmp/sagemaker_sessions")
    }

    func testEnvironmentIsUsedWithoutDirectives() throws {
        let config = try resolve(env: [
            "SAGEMAKER_ENABLE_STATEFUL_SESSIONS": "TRUE",
            "SAGEMAKER_SESSIONS_PATH": "/srv/sessions",
            "SAGEMAKER_SESSIONS_EXPIRATION": "30",
        ])
        XCTAssertEqual(config, Configuration(enabled: true, path: "/srv/sessions", expiration: 30))
        XCTAssertTrue(try resolve(env: ["SAGEMAKER_ENABLE_STATEFUL_SESSIONS": "1"]).enabled)
        XCTAssertFalse(try resolve(env: ["SAGEMAKER_ENABLE_STATEFUL_SESSIONS": "yes"]).enabled)
    }

    func testDirectivesWinOverEnvironment() throws {
        let directives = Configuration.Directives(enabled: false, path: "/from/directive", expiration: 99)
        let config = try resolve(directives, env: [
            "SAGEMAKER_ENABLE_STATEFUL_SESSIONS": "true",
            "SAGEMAKER_SESSIONS_PATH": "/from/env",
            "SAGEMAKER_SESSIONS_EXPIRATION": "30",
        ])
        XCTAssertEqual(config, Configuration(enabled: false, path: "/from/directive", expiration: 99))
        XCTAssertTrue(try resolve(.init(enabled: true), env: ["SAGEMAKER_ENABLE_STATEFUL_SESSIONS": "false"]).enabled)
    }

    func testDirectivesHideInvalidEnvironment() throws {
        let config = try resolve(.init(path: "/p", expiration: 5), env: [
            "SAGEMAKER_SESSIONS_PATH": "",
            "SAGEMAKER_SESSIONS_EXPIRATION": "abc",
        ])
        XCTAssertEqual(config, Configuration(enabled: false, path: "/p", expiration: 5))
    }

    func testPathIsNormalized() throws {
        XCTAssertEqual(try resolve(env: ["SAGEMAKER_SESSIONS_PATH": "//srv///sessions//"]).path, "/srv/sessions")
        XCTAssertEqual(try resolve(.init(path: "/a//b/")).path, "/a/b")
        XCTAssertEqual(try resolve(.init(path: "/")).path, "/")
    }

    func testInvalidExpirationInEnvironmentThrows() {
        for value in ["abc", "0", "-5", "1.5", ""] {
            let message = resolveError(env: ["SAGEMAKER_SESSIONS_EXPIRATION": value])
            XCTAssertEqual(message,
                           "SAGEMAKER_SESSIONS_EXPIRATION=\"\(value)\" is not a whole number of seconds between 1 and 315360000 (10 years)")
        }
    }

    func testEmptyPathInEnvironmentThrows() {
        XCTAssertEqual(resolveError(env: ["SAGEMAKER_SESSIONS_PATH": ""]), "SAGEMAKER_SESSIONS_PATH is empty")
    }

    func testRelativePathInEnvironmentThrows() {
        XCTAssertEqual(resolveError(env: ["SAGEMAKER_SESSIONS_PATH": "sessions/here"]),
                       "SAGEMAKER_SESSIONS_PATH=\"sessions/here\" is not an absolute path")
        XCTAssertEqual(resolveError(env: ["SAGEMAKER_SESSIONS_PATH": "./x"]),
                       "SAGEMAKER_SESSIONS_PATH=\"./x\" is not an absolute path")
    }

    func testProcessEnvironment() {
        let name = "SMS_TEST_VARIABLE_\(getpid())"
        XCTAssertNil(Configuration.processEnvironment(name))
        setenv(name, "value", 1)
        defer { unsetenv(name) }
        XCTAssertEqual(Configuration.processEnvironment(name), "value")
    }

    // MARK: prepareDirectory

    func testPrepareDirectoryCreatesNestedDirectories() throws {
        let path = root + "/a/b/c"
        let config = Configuration(enabled: true, path: path, expiration: 1200)
        let prepared = try config.prepareDirectory(fallback: root + "/fallback")
        XCTAssertEqual(prepared.path, path)
        XCTAssertNil(prepared.warning)
        XCTAssertTrue(TestFS.isDirectory(path))
        XCTAssertFalse(TestFS.exists(root + "/fallback"))
        // Again, now that it exists.
        XCTAssertEqual(try config.prepareDirectory(fallback: root + "/fallback").path, path)
    }

    func testPrepareDirectoryFallsBack() throws {
        XCTAssertTrue(TestFS.write(root + "/file", "x"))
        let path = root + "/file/sessions"
        let fallback = root + "/tmp/sagemaker_sessions"
        let prepared = try Configuration(enabled: true, path: path, expiration: 1200).prepareDirectory(fallback: fallback)
        XCTAssertEqual(prepared.path, fallback)
        XCTAssertEqual(prepared.warning,
                       "sessions path \"\(path)\" is not usable (Not a directory), falling back to \"\(fallback)\"")
        XCTAssertTrue(TestFS.isDirectory(fallback))
    }

    func testPrepareDirectoryFallsBackWhenPathIsAFile() throws {
        XCTAssertTrue(TestFS.write(root + "/file", "x"))
        let fallback = root + "/fb"
        let prepared = try Configuration(enabled: true, path: root + "/file", expiration: 1200)
            .prepareDirectory(fallback: fallback)
        XCTAssertEqual(prepared.path, fallback)
        XCTAssertEqual(prepared.warning,
                       "sessions path \"\(root)/file\" is not usable (Not a directory), falling back to \"\(fallback)\"")
    }

    func testPrepareDirectoryThrowsWhenFallbackFailsToo() {
        XCTAssertTrue(TestFS.write(root + "/file", "x"))
        let path = root + "/file/sessions"
        let fallback = root + "/file/fallback"
        XCTAssertThrowsError(try Configuration(enabled: true, path: path, expiration: 1200).prepareDirectory(fallback: fallback)) { error in
            XCTAssertEqual((error as? Configuration.Invalid)?.description,
                           "sessions path \"\(path)\" is not usable (Not a directory), nor is the fallback \"\(fallback)\" (Not a directory)")
        }
    }
}
