import DurableFiles
import Foundation
import Templates

extension ClusterPaths {
    /// Sets every path and user of `ctx` as the installer lays a member out: the blueprint renders the units from
    /// it, and the built-in supervisor runs the components from the same values.
    static func lay(out ctx: inout ClusterContext) {
        ctx.caFile = caCert
        ctx.etcdBin = etcdBin
        ctx.etcdConfig = etcdConfig
        ctx.etcdData = etcdData
        ctx.postgresBin = postgresBin
        ctx.postgresData = postgresData
        ctx.postgresHome = postgresHome
        ctx.postgresSocketDir = postgresSocketDir
        ctx.python = python
        ctx.patroniScript = patroniScript
        ctx.patroniConfig = patroniConfig
        ctx.haproxyBin = haproxyBin
        ctx.haproxyConfig = haproxyConfig
        ctx.haproxySocket = haproxySocket
        ctx.haproxyState = haproxyState
        ctx.agentRuntime = agentRuntime
        ctx.warblerBinary = Paths.currentBinary
        ctx.keepalivedBin = keepalivedBin
        ctx.keepalivedConfig = keepalivedConfig
        ctx.keepalivedState = keepalivedState
        ctx.keepalivedRuntime = keepalivedRuntime
        ctx.etcdUser = etcdUser
        ctx.postgresUser = postgresUser
        ctx.haproxyUser = haproxyUser
    }

    /// The context of the member recorded in `member` (its address, its virtual IP): enough to describe its
    /// components, nothing secret.
    public static func context(member: MemberFile) -> ClusterContext {
        var ctx = ClusterContext()
        lay(out: &ctx)
        ctx.nodeName = member.member.name
        ctx.advertise = member.member.address
        ctx.vip = member.vip ?? ""
        return ctx
    }

    /// The components the member in `member` runs, in starting order (by its roles and its virtual IP).
    public static func components(of member: MemberFile) -> [ClusterComponent] {
        let roles = Set(member.member.roles)
        return context(member: member).components(etcd: roles.contains(.etcd), database: roles.contains(.database))
    }

    /// Every component as the layout alone describes it (no member record: the address and VIP are placeholders).
    /// Enough for what does not depend on them: units, names, PID files, logs.
    public static var laidOutComponents: [ClusterComponent] {
        var ctx = ClusterContext()
        lay(out: &ctx)
        return ctx.allComponents
    }

    /// How this installed member runs `unit`, from its member record (root's file, read without following links).
    public static func installedComponent(_ unit: String, layout: Layout = Layout()) throws -> ClusterComponent {
        let data = try RootFile.read(layout.path(memberFile))
        let ctx = context(member: try MemberFile.load(data))
        guard let component = ctx.allComponents.first(where: { $0.unit == unit }) else {
            throw SystemError("\(unit) is not a cluster component")
        }
        return component
    }
}
