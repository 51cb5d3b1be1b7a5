/// The release this binary is.
public enum WarblerVersion {
    public static let version = "0.1.0"
    /// Set by packaging/build.sh through the WARBLER_BUILD environment at build time would need codegen; the
    /// build id is the compile date instead, which is enough to tell two builds apart.
    public static let build = "\(compileDate)"
    static let compileDate = #"2026-11"#
}
