#include "crypto/node_key.h"

#include <fcntl.h>
#include <sodium.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>

#include "base/fd.h"
#include "crypto/hashes.h"

namespace tgw::crypto {
namespace {

constexpr char kHex[] = "0123456789abcdef";

std::string toHex(std::span<const uint8_t> b) {
  std::string s;
  s.reserve(b.size() * 2);
  for (uint8_t x : b) {
    s.push_back(kHex[x >> 4]);
    s.push_back(kHex[x & 15]);
  }
  return s;
}

int hexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

bool fromHex(std::string_view text, std::span<uint8_t> out) {
  if (text.size() != out.size() * 2) return false;
  for (size_t i = 0; i < out.size(); ++i) {
    int hi = hexValue(text[2 * i]);
    int lo = hexValue(text[2 * i + 1]);
    if (hi < 0 || lo < 0) return false;
    out[i] = static_cast<uint8_t>(hi << 4 | lo);
  }
  return true;
}

std::string modeText(mode_t mode) {
  char buf[8];
  std::snprintf(buf, sizeof buf, "%04o", static_cast<unsigned>(mode & 07777));
  return buf;
}

}  // namespace

Result<PublicKey> PublicKey::fromBytes(std::span<const uint8_t> bytes) {
  if (bytes.size() != kKeySize) {
    return fail("public key must be " + std::to_string(kKeySize) + " bytes, got " +
                std::to_string(bytes.size()));
  }
  PublicKey k = raw(bytes.first<kKeySize>());
  if (k.isZero()) return fail("public key is all zero");
  if (!k.isValid()) return fail("public key is a point of small order (weak key)");
  return k;
}

PublicKey PublicKey::raw(std::span<const uint8_t, kKeySize> bytes) {
  PublicKey k;
  std::memcpy(k.bytes_.data(), bytes.data(), kKeySize);
  return k;
}

Result<PublicKey> PublicKey::parse(std::string_view text) {
  if (!text.starts_with(kPublicKeyPrefix)) {
    return fail("public key must start with \"tgw:\"");
  }
  std::array<uint8_t, kKeySize> b{};
  if (!fromHex(text.substr(kPublicKeyPrefix.size()), b)) {
    return fail("public key must be \"tgw:\" and 64 hex digits");
  }
  return fromBytes(b);
}

std::string PublicKey::toString() const { return std::string(kPublicKeyPrefix) + toHex(bytes_); }

std::string PublicKey::shortString() const {
  return std::string(kPublicKeyPrefix) + toHex(std::span<const uint8_t>(bytes_).first(4));
}

bool PublicKey::isZero() const { return sodium_is_zero(bytes_.data(), bytes_.size()) == 1; }

bool PublicKey::isValid() const {
  ensureSodium();
  // Multiplying by a clamped scalar (a multiple of the cofactor 8) sends every point of
  // small order to the identity; libsodium reports the all-zero result as -1.
  static const std::array<uint8_t, kKeySize> kProbeScalar = [] {
    std::array<uint8_t, kKeySize> s{};
    s.fill(0x5a);
    return s;
  }();
  std::array<uint8_t, kKeySize> out{};
  return crypto_scalarmult(out.data(), kProbeScalar.data(), bytes_.data()) == 0;
}

NodeKey NodeKey::generate() {
  ensureSodium();
  NodeKey k;
  std::array<uint8_t, kKeySize> pub{};
  crypto_box_keypair(pub.data(), k.secret_.data());
  k.public_ = PublicKey::raw(pub);
  return k;
}

Result<NodeKey> NodeKey::fromSecret(std::span<const uint8_t> secret) {
  ensureSodium();
  if (secret.size() != kKeySize) return fail("private key must be 32 bytes");
  NodeKey k;
  std::memcpy(k.secret_.data(), secret.data(), kKeySize);
  std::array<uint8_t, kKeySize> pub{};
  if (crypto_scalarmult_base(pub.data(), k.secret_.data()) != 0) {
    return fail("private key gives no usable public key");
  }
  k.public_ = PublicKey::raw(pub);
  if (!k.public_.isValid()) return fail("private key gives a weak public key");
  return k;
}

NodeKey::~NodeKey() { sodium_memzero(secret_.data(), secret_.size()); }

Result<void> NodeKey::save(const std::string& path, bool replace) const {
  std::array<uint8_t, 8> rnd{};
  randomBytes(rnd);
  const std::string tmp = path + ".tmp-" + toHex(rnd);
  // 0600 from the start: the file is never readable by others, not even between create
  // and rename (the umask can only remove bits).
  UniqueFd fd(::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600));
  if (!fd.valid()) return fail(errnoText("key file " + tmp + ": create"));
  std::string text = std::string(kKeyFilePrefix) + toHex(secret_) + "\n";
  auto cleanup = [&](std::string msg) -> Result<void> {
    sodium_memzero(text.data(), text.size());
    ::unlink(tmp.c_str());
    return fail(std::move(msg));
  };
  size_t done = 0;
  while (done < text.size()) {
    ssize_t n = ::write(fd.get(), text.data() + done, text.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return cleanup(errnoText("key file " + tmp + ": write"));
    done += static_cast<size_t>(n);
  }
  if (::fsync(fd.get()) != 0) return cleanup(errnoText("key file " + tmp + ": fsync"));
  fd.reset();
  if (replace) {
    if (::rename(tmp.c_str(), path.c_str()) != 0) return cleanup(errnoText("key file " + path + ": rename"));
  } else {
    // link() fails with EEXIST instead of replacing: never overwrite a key by accident.
    if (::link(tmp.c_str(), path.c_str()) != 0) return cleanup(errnoText("key file " + path));
    ::unlink(tmp.c_str());
  }
  sodium_memzero(text.data(), text.size());
  return {};
}

Result<NodeKey> NodeKey::load(const std::string& path) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK));
  if (!fd.valid()) return fail(errnoText("key file " + path));
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0) return fail(errnoText("key file " + path + ": stat"));
  if (!S_ISREG(st.st_mode)) return fail("key file " + path + ": not a regular file");
  // Owned by us or by root: another user owning it could replace the key (as ssh checks).
  if (st.st_uid != ::geteuid() && st.st_uid != 0) {
    return fail("key file " + path + ": owned by uid " + std::to_string(st.st_uid) + ", not by uid " +
                std::to_string(::geteuid()) + " or root");
  }
  if ((st.st_mode & 077) != 0) {
    return fail("key file " + path + ": mode " + modeText(st.st_mode) +
                " lets group or others access it; run chmod 600 " + path);
  }
  std::array<char, 256> buf{};
  size_t len = 0;
  while (len < buf.size()) {
    ssize_t n = ::read(fd.get(), buf.data() + len, buf.size() - len);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return fail(errnoText("key file " + path + ": read"));
    if (n == 0) break;
    len += static_cast<size_t>(n);
  }
  std::string_view text(buf.data(), len);
  if (text.ends_with('\n')) text.remove_suffix(1);
  std::array<uint8_t, kKeySize> secret{};
  bool ok = text.starts_with(kKeyFilePrefix) && fromHex(text.substr(kKeyFilePrefix.size()), secret);
  sodium_memzero(buf.data(), buf.size());
  if (!ok) {
    return fail("key file " + path + ": expected one line \"tgw-private:\" and 64 hex digits");
  }
  auto key = fromSecret(secret);
  sodium_memzero(secret.data(), secret.size());
  if (!key) return fail("key file " + path + ": " + key.error().message);
  return key;
}

Result<NodeKey> NodeKey::loadOrCreate(const std::string& path) {
  const std::filesystem::path dir = std::filesystem::path(path).parent_path();
  if (!dir.empty() && ::mkdir(dir.c_str(), 0700) != 0 && errno != EEXIST) {
    return fail(path + ": " + errnoText("cannot create the key file's folder " + dir.string()));
  }
  struct stat st {};
  if (::lstat(path.c_str(), &st) == 0 || errno != ENOENT) return load(path);
  NodeKey k = generate();
  if (auto r = k.save(path); !r) return fail(r.error().message);
  return k;
}

}  // namespace tgw::crypto

size_t std::hash<tgw::crypto::PublicKey>::operator()(const tgw::crypto::PublicKey& k) const noexcept {
  // SipHash with a per-process random key: keys come off the network, and a sender choosing
  // keys must not be able to make them collide in the tables that hold them.
  static const std::array<uint8_t, crypto_shorthash_KEYBYTES> kHashKey = [] {
    std::array<uint8_t, crypto_shorthash_KEYBYTES> key{};
    tgw::crypto::randomBytes(key);
    return key;
  }();
  std::array<uint8_t, crypto_shorthash_BYTES> out{};
  crypto_shorthash(out.data(), k.bytes().data(), k.bytes().size(), kHashKey.data());
  size_t h = 0;
  std::memcpy(&h, out.data(), sizeof h);
  return h;
}
