import DurableFiles
import Installer
import NIOSSL

extension TLSConfiguration {
    /// Presents root's copy of this member's certificate as the client certificate: a cluster member's IM server
    /// admits only holders of one from the cluster CA. Root only (the key is read through `RootFile`).
    mutating func presentClusterIdentity() throws {
        let key = try NIOSSLPrivateKey(bytes: Array(try RootFile.read(ClusterPaths.rootKey)), format: .pem)
        let chain = try NIOSSLCertificate.fromPEMFile(ClusterPaths.rootCert)
        certificateChain = chain.map { .certificate($0) }
        privateKey = .privateKey(key)
    }
}
