/// Where an ELF executable's own bytes end, read from its headers: the furthest of the program headers, the
/// section headers and every section with contents. Anything after that was appended. Lets a missing trailer be told
/// apart: nothing appended (a plain build) or bytes appended but the end cut off (a truncated download).
enum ELFExtent {
    /// The end of the ELF image in `fd`, or nil when the file is not a 64-bit little-endian ELF.
    static func end(fd: Int32, path: String, fileSize: UInt64) -> UInt64? {
        guard fileSize >= 64, let header = try? FileIO.read(fd: fd, path: path, offset: 0, count: 64),
              header[0..<4].elementsEqual([0x7F, 0x45, 0x4C, 0x46]), header[4] == 2, header[5] == 1
        else { return nil }
        let phoff = u64(header, 0x20), shoff = u64(header, 0x28)
        let phentsize = UInt64(u16(header, 0x36)), phnum = UInt64(u16(header, 0x38))
        let shentsize = UInt64(u16(header, 0x3A)), shnum = UInt64(u16(header, 0x3C))
        // Wrapping arithmetic: a damaged header must give a wrong answer, not a crash.
        var end = max(64, phoff &+ phentsize &* phnum, shoff &+ shentsize &* shnum)
        // Sections normally lie before the section header table; check rather than assume.
        if shnum > 0, shentsize >= 64, shoff < fileSize, shentsize &* shnum <= fileSize - shoff,
           let table = try? FileIO.read(fd: fd, path: path, offset: shoff, count: Int(shentsize * shnum)) {
            for i in 0..<Int(shnum) {
                let base = i * Int(shentsize)
                let type = u32(table, base + 4)
                let offset = u64(table, base + 0x18), size = u64(table, base + 0x20)
                if type != 8 /* SHT_NOBITS */ { end = max(end, offset &+ size) }
            }
        }
        return end
    }

    private static func u16(_ b: [UInt8], _ at: Int) -> UInt16 { UInt16(b[at]) | UInt16(b[at + 1]) << 8 }
    private static func u32(_ b: [UInt8], _ at: Int) -> UInt32 { (0..<4).reduce(0) { $0 | UInt32(b[at + $1]) << (8 * UInt32($1)) } }
    private static func u64(_ b: [UInt8], _ at: Int) -> UInt64 { (0..<8).reduce(0) { $0 | UInt64(b[at + $1]) << (8 * UInt64($1)) } }
}
