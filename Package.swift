// swift-tools-version:5.9
import PackageDescription

// Flags that keep the module free of Swift concurrency and regex runtimes, which
// would pull libdispatch and threads into single-threaded nginx workers. Since
// a worker is one thread, reference counts need no atomic instructions, and
// exclusive access is checked by the compiler, not again on every request.
let lean: [SwiftSetting] = [
    .unsafeFlags([
        "-Xfrontend", "-disable-implicit-concurrency-module-import",
        "-Xfrontend", "-disable-implicit-string-processing-module-import",
        "-Xfrontend", "-assume-single-threaded",
        "-enforce-exclusivity=unchecked",
    ]),
]

let package = Package(
    name: "SageMakerSessions",
    products: [
        // Linked into ngx_http_sagemaker_sessions_module.so by nginx/config.
        .library(name: "SageMakerSessionsModule", type: .static, targets: ["SageMakerSessionsABI"]),
    ],
    targets: [
        .systemLibrary(name: "CJansson", path: "CInterop/CJansson"),
        .systemLibrary(name: "CSageMakerSessions", path: "CInterop/CSageMakerSessions"),
        .systemLibrary(name: "CAtomics", path: "CInterop/CAtomics"),
        .target(name: "SageMakerSessions", dependencies: ["CJansson", "CAtomics"], swiftSettings: lean),
        .target(name: "SageMakerSessionsABI",
                dependencies: ["SageMakerSessions", "CSageMakerSessions"], swiftSettings: lean),
        .testTarget(name: "SageMakerSessionsTests", dependencies: ["SageMakerSessions"]),
    ]
)
