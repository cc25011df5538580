import Foundation
import SiteFiles

#if canImport(Glibc)
  import Glibc
#elseif canImport(Darwin)
  import Darwin
#endif

/// Owner, group and permission bits of a file.
public struct Ownership: Sendable, Hashable, CustomStringConvertible {
  public var uid: UInt32
  public var gid: UInt32
  public var mode: UInt16

  public init(uid: UInt32, gid: UInt32, mode: UInt16) {
    self.uid = uid
    self.gid = gid
    self.mode = mode
  }

  public var description: String { "uid \(uid) gid \(gid) mode \(String(mode, radix: 8))" }

  /// What differs from `wanted`, in words (nil: nothing), e.g. "mode 644 -> 640".
  public func difference(to wanted: Ownership, names: (UInt32) -> String) -> String? {
    var parts: [String] = []
    if uid != wanted.uid { parts.append("owner uid \(uid) -> \(wanted.uid)") }
    if gid != wanted.gid { parts.append("group \(names(gid)) -> \(names(wanted.gid))") }
    if mode != wanted.mode { parts.append("mode \(String(mode, radix: 8)) -> \(String(wanted.mode, radix: 8))") }
    return parts.isEmpty ? nil : parts.joined(separator: ", ")
  }
}

/// The appliance's file system, possibly under a folder (`--root`, for tests and for
/// building an image): paths of the appliance are prefixed, groups are looked up in that
/// folder's etc/group.
public struct ApplianceFileSystem: Sendable {
  /// "/" for the running appliance.
  public var root: String

  public init(root: String) {
    self.root = root.isEmpty ? "/" : root
  }

  public var isLive: Bool { root == "/" }

  /// Where the appliance's `path` is on this machine.
  public func path(_ path: String) -> String {
    guard !isLive else { return path }
    let base = root.hasSuffix("/") ? String(root.dropLast()) : root
    return path.hasPrefix("/") ? base + path : base + "/" + path
  }

  public enum Group: Sendable, Hashable {
    case found(gid: UInt32)
    /// The group does not exist; `where` says where it was looked for.
    case missing(where: String)
  }

  /// The group's id: from the system's groups on the appliance, from `<root>/etc/group`
  /// under a root (an image's groups, not this machine's).
  public func group(named name: String) -> Group {
    if isLive {
      guard let entry = getgrnam(name) else { return .missing(where: "the system's groups") }
      return .found(gid: entry.pointee.gr_gid)
    }
    let file = path("/etc/group")
    guard let text = try? String(contentsOfFile: file, encoding: .utf8) else { return .missing(where: file) }
    for line in text.split(separator: "\n") {
      let fields = line.split(separator: ":", omittingEmptySubsequences: false)
      if fields.count >= 3, fields[0] == name, let gid = UInt32(fields[2]) { return .found(gid: gid) }
    }
    return .missing(where: file)
  }

  /// A group id's name, for messages.
  public func groupName(_ gid: UInt32, known: [String: UInt32]) -> String {
    if let name = known.first(where: { $0.value == gid })?.key { return name }
    if gid == 0 { return "root" }
    if isLive, let entry = getgrgid(gid) { return String(cString: entry.pointee.gr_name) }
    return "gid \(gid)"
  }
}

/// Reading and writing the secret files, never leaving a half-written one: each is written
/// to a temporary file beside it, with its owner and mode set before anything secret goes
/// in, synced, and renamed over the old one.
public enum SecretFileIO {
  public static func exists(_ path: String) -> Bool {
    var info = stat()
    return lstat(path, &info) == 0
  }

  /// What the file holds, read as the daemon reads it (`SecretFile.firstLine`).
  public static func state(at path: String) throws(ProvisioningFailure) -> SecretState {
    var info = stat()
    guard stat(path, &info) == 0 else {
      if errno == ENOENT { return .missing }
      throw ProvisioningFailure("\(path) cannot be examined: \(String(cString: strerror(errno)))")
    }
    guard (info.st_mode & S_IFMT) == S_IFREG else { throw ProvisioningFailure("\(path) is not a regular file") }
    switch SecretFile.firstLine(of: path) {
    case .success(let value): return .present(value)
    case .failure(let problem) where problem.kind == .empty: return .unusable("has nothing on its first line")
    case .failure: throw ProvisioningFailure("\(path) cannot be read (as UTF-8 text)")
    }
  }

  /// The file's text (nil: there is none).
  public static func text(at path: String) throws(ProvisioningFailure) -> String? {
    guard exists(path) else { return nil }
    guard let data = FileManager.default.contents(atPath: path) else {
      throw ProvisioningFailure("\(path) cannot be read")
    }
    guard let text = String(data: data, encoding: .utf8) else { throw ProvisioningFailure("\(path) is not UTF-8 text") }
    return text
  }

  public static func ownership(of path: String) -> Ownership? {
    var info = stat()
    guard stat(path, &info) == 0 else { return nil }
    return Ownership(uid: info.st_uid, gid: info.st_gid, mode: UInt16(info.st_mode & 0o7777))
  }

  /// Fails, naming the folder, unless a file can be created in `path`'s folder (or in the
  /// nearest folder above it that exists, where the missing ones will be made).
  public static func checkWritableFolder(for path: String) throws(ProvisioningFailure) {
    var folder = (path as NSString).deletingLastPathComponent
    while !folder.isEmpty && !exists(folder) && folder != "/" {
      folder = (folder as NSString).deletingLastPathComponent
    }
    if folder.isEmpty { folder = "." }
    var isFolder: ObjCBool = false
    guard FileManager.default.fileExists(atPath: folder, isDirectory: &isFolder), isFolder.boolValue else {
      throw ProvisioningFailure("\(folder) is not a folder, so \(path) cannot be written")
    }
    guard access(folder, W_OK | X_OK) == 0 else {
      throw ProvisioningFailure("\(folder) is not writable, so \(path) cannot be written (run as root?)")
    }
  }

  /// Makes `path`'s missing folders (root's, mode 755, or `mode`).
  public static func makeFolders(for path: String, mode: UInt16 = 0o755) throws(ProvisioningFailure) {
    let folder = (path as NSString).deletingLastPathComponent
    guard !folder.isEmpty, !exists(folder) else { return }
    do {
      try FileManager.default.createDirectory(
        atPath: folder, withIntermediateDirectories: true, attributes: [.posixPermissions: Int(mode)])
    } catch {
      throw ProvisioningFailure("\(folder) cannot be made: \(error.localizedDescription)")
    }
  }

  /// Writes `content` to `path` with `ownership`, atomically: the old file, if any, stays
  /// whole until the new one is complete on disk.
  public static func writeAtomically(_ content: String, to path: String, ownership: Ownership)
    throws(ProvisioningFailure)
  {
    let folder = (path as NSString).deletingLastPathComponent
    let name = (path as NSString).lastPathComponent
    let temporary = (folder.isEmpty ? "." : folder) + "/.\(name).provision-\(getpid())"
    func failure(_ what: String) -> ProvisioningFailure {
      let why = String(cString: strerror(errno))
      unlink(temporary)
      return ProvisioningFailure("\(path) cannot be written (\(what) \(temporary)): \(why)")
    }
    unlink(temporary)
    // Only the owner may open it while it is being filled in.
    let fd = open(temporary, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o600)
    guard fd >= 0 else { throw failure("creating") }
    var ok = fchown(fd, ownership.uid, ownership.gid) == 0 && fchmod(fd, mode_t(ownership.mode)) == 0
    if !ok {
      let error = failure("setting the owner and mode of")
      close(fd)
      throw error
    }
    let bytes = Array(content.utf8)
    var written = 0
    while ok && written < bytes.count {
      let n = bytes[written...].withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
      if n < 0 && errno == EINTR { continue }
      ok = n > 0
      if ok { written += n }
    }
    ok = ok && fsync(fd) == 0
    if !ok {
      let error = failure("writing")
      close(fd)
      throw error
    }
    guard close(fd) == 0 else { throw failure("closing") }
    guard rename(temporary, path) == 0 else { throw failure("renaming") }
    syncFolder(folder.isEmpty ? "." : folder)
  }

  /// Sets the owner and mode of an existing file.
  public static func setOwnership(of path: String, to ownership: Ownership) throws(ProvisioningFailure) {
    guard chown(path, ownership.uid, ownership.gid) == 0, chmod(path, mode_t(ownership.mode)) == 0 else {
      throw ProvisioningFailure(
        "\(path): cannot set owner and mode (\(ownership)): \(String(cString: strerror(errno)))")
    }
  }

  /// Creates `path` (which must not exist) with `content`, only its owner may read it.
  public static func createPrivate(_ content: String, at path: String) throws(ProvisioningFailure) {
    let fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o600)
    guard fd >= 0 else {
      throw ProvisioningFailure("\(path) cannot be created: \(String(cString: strerror(errno)))")
    }
    defer { close(fd) }
    let bytes = Array(content.utf8)
    var written = 0
    while written < bytes.count {
      let n = bytes[written...].withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
      if n < 0 && errno == EINTR { continue }
      guard n > 0 else {
        let why = String(cString: strerror(errno))
        unlink(path)
        throw ProvisioningFailure("\(path) cannot be written: \(why)")
      }
      written += n
    }
    guard fsync(fd) == 0 else {
      let why = String(cString: strerror(errno))
      unlink(path)
      throw ProvisioningFailure("\(path) cannot be written: \(why)")
    }
  }

  /// A rename is on disk only once its folder is.
  private static func syncFolder(_ folder: String) {
    let fd = open(folder, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
    guard fd >= 0 else { return }
    fsync(fd)
    close(fd)
  }
}
