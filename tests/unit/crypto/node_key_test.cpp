// Node keys: text form, weak keys, key files and their permissions.
#include "crypto/node_key.h"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

#include "crypto/seal.h"

namespace tgw::crypto {
namespace {

std::array<uint8_t, 32> fromHex(std::string_view h) {
  std::array<uint8_t, 32> out{};
  for (size_t i = 0; i < 32; ++i) out[i] = static_cast<uint8_t>(std::stoi(std::string(h.substr(2 * i, 2)), nullptr, 16));
  return out;
}

// The all-zero key and the points of small order on Curve25519 (and their non-canonical
// encodings), as libsodium's blocklist names them.
const char* const kWeakKeys[] = {
    "0000000000000000000000000000000000000000000000000000000000000000",
    "0100000000000000000000000000000000000000000000000000000000000000",
    "e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800",
    "5f9c95bca3508c24b1d0b1559c83ef5b04445cc4581c8e86d8224eddd09f1157",
    "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
    "edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
    "eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
};

class TempDir {
 public:
  TempDir() {
    std::string tmpl = (std::filesystem::temp_directory_path() / "tgw-key-XXXXXX").string();
    path_ = ::mkdtemp(tmpl.data()) ? tmpl : "";
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  std::string file(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

mode_t modeOf(const std::string& path) {
  struct stat st {};
  EXPECT_EQ(::stat(path.c_str(), &st), 0);
  return st.st_mode & 07777;
}

TEST(PublicKey, TextRoundTrip) {
  NodeKey k = NodeKey::generate();
  std::string text = k.publicKey().toString();
  EXPECT_EQ(text.size(), 4u + 64u);
  EXPECT_EQ(text.substr(0, 4), "tgw:");
  auto back = PublicKey::parse(text);
  ASSERT_TRUE(back.ok()) << back.error().message;
  EXPECT_EQ(*back, k.publicKey());
  // Upper case hex is accepted too.
  std::string upper = "tgw:";
  for (char c : text.substr(4)) upper.push_back(static_cast<char>(std::toupper(c)));
  EXPECT_EQ(PublicKey::parse(upper).value(), k.publicKey());
  EXPECT_EQ(k.publicKey().shortString(), text.substr(0, 12));
}

TEST(PublicKey, ParseRefusesBadText) {
  std::string good = NodeKey::generate().publicKey().toString();
  EXPECT_FALSE(PublicKey::parse(good.substr(4)).ok());                 // no prefix
  EXPECT_FALSE(PublicKey::parse(good.substr(0, good.size() - 1)).ok()); // short
  EXPECT_FALSE(PublicKey::parse(good + "0").ok());                      // long
  EXPECT_FALSE(PublicKey::parse("tgw:" + std::string(63, 'a') + "g").ok());
  EXPECT_FALSE(PublicKey::parse(" " + good).ok());
}

TEST(PublicKey, WeakKeysAreRefused) {
  NodeKey me = NodeKey::generate();
  for (const char* hex : kWeakKeys) {
    auto bytes = fromHex(hex);
    auto k = PublicKey::fromBytes(bytes);
    EXPECT_FALSE(k.ok()) << hex;
    EXPECT_FALSE(PublicKey::parse(std::string("tgw:") + hex).ok()) << hex;
    PublicKey raw = PublicKey::raw(bytes);
    EXPECT_FALSE(raw.isValid()) << hex;
    // And a shared key cannot be derived with one (crypto_box_beforenm refuses).
    auto shared = SharedKey::derive(me, raw);
    ASSERT_FALSE(shared.ok()) << hex;
    EXPECT_EQ(shared.error(), OpenError::BadKey);
  }
  EXPECT_TRUE(me.publicKey().isValid());
  EXPECT_TRUE(PublicKey::fromBytes(me.publicKey().bytes()).ok());
  EXPECT_FALSE(PublicKey::fromBytes(std::vector<uint8_t>(31, 7)).ok());
}

TEST(NodeKey, FromSecretDerivesTheSamePublicKey) {
  NodeKey k = NodeKey::generate();
  auto again = NodeKey::fromSecret(k.secret());
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again->publicKey(), k.publicKey());
  EXPECT_NE(NodeKey::generate().publicKey(), k.publicKey());
}

TEST(KeyFile, WrittenWithMode0600AndLoadsBack) {
  TempDir dir;
  const std::string path = dir.file("node.key");
  mode_t old = ::umask(0);  // even with no umask the file must not be readable by others
  NodeKey k = NodeKey::generate();
  auto saved = k.save(path);
  ::umask(old);
  ASSERT_TRUE(saved.ok()) << saved.error().message;
  EXPECT_EQ(modeOf(path), 0600u);
  auto loaded = NodeKey::load(path);
  ASSERT_TRUE(loaded.ok()) << loaded.error().message;
  EXPECT_EQ(loaded->publicKey(), k.publicKey());
  // No temporary file is left behind.
  size_t files = 0;
  for (const auto& e : std::filesystem::directory_iterator(std::filesystem::path(path).parent_path())) {
    (void)e;
    ++files;
  }
  EXPECT_EQ(files, 1u);
}

TEST(KeyFile, GroupOrWorldReadableIsRefusedNamingFileAndMode) {
  TempDir dir;
  const std::string path = dir.file("node.key");
  ASSERT_TRUE(NodeKey::generate().save(path).ok());
  for (mode_t mode : {0644u, 0640u, 0604u, 0660u, 0602u}) {
    ASSERT_EQ(::chmod(path.c_str(), mode), 0);
    auto loaded = NodeKey::load(path);
    ASSERT_FALSE(loaded.ok()) << std::oct << mode;
    EXPECT_NE(loaded.error().message.find(path), std::string::npos) << loaded.error().message;
    char modeText[8];
    std::snprintf(modeText, sizeof modeText, "%04o", static_cast<unsigned>(mode));
    EXPECT_NE(loaded.error().message.find(modeText), std::string::npos) << loaded.error().message;
  }
  ASSERT_EQ(::chmod(path.c_str(), 0600), 0);
  EXPECT_TRUE(NodeKey::load(path).ok());
  ASSERT_EQ(::chmod(path.c_str(), 0400), 0);
  EXPECT_TRUE(NodeKey::load(path).ok());
}

TEST(KeyFile, OwnedByAnotherUserIsRefused) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root to give the file to another user";
  TempDir dir;
  const std::string path = dir.file("node.key");
  ASSERT_TRUE(NodeKey::generate().save(path).ok());
  ASSERT_EQ(::chown(path.c_str(), 65534, 65534), 0);
  auto loaded = NodeKey::load(path);
  ASSERT_FALSE(loaded.ok());
  EXPECT_NE(loaded.error().message.find("owned by uid 65534"), std::string::npos) << loaded.error().message;
  ASSERT_EQ(::chown(path.c_str(), 0, 0), 0);
  EXPECT_TRUE(NodeKey::load(path).ok());
}

TEST(KeyFile, SaveDoesNotOverwriteUnlessAsked) {
  TempDir dir;
  const std::string path = dir.file("node.key");
  NodeKey first = NodeKey::generate();
  NodeKey second = NodeKey::generate();
  ASSERT_TRUE(first.save(path).ok());
  EXPECT_FALSE(second.save(path).ok());
  EXPECT_EQ(NodeKey::load(path)->publicKey(), first.publicKey());
  ASSERT_TRUE(second.save(path, /*replace=*/true).ok());
  EXPECT_EQ(NodeKey::load(path)->publicKey(), second.publicKey());
  EXPECT_EQ(modeOf(path), 0600u);
}

TEST(KeyFile, LoadOrCreateCreatesOnceThenLoads) {
  TempDir dir;
  const std::string path = dir.file("node.key");
  auto a = NodeKey::loadOrCreate(path);
  ASSERT_TRUE(a.ok()) << a.error().message;
  auto b = NodeKey::loadOrCreate(path);
  ASSERT_TRUE(b.ok()) << b.error().message;
  EXPECT_EQ(a->publicKey(), b->publicKey());
}

// The daemon's key files may name a folder that does not exist yet: it is created owner-only.
// A folder that cannot be created is named in the error.
TEST(KeyFile, LoadOrCreateCreatesTheMissingFolderOwnerOnly) {
  TempDir dir;
  const std::string folder = dir.file("keys");
  const std::string path = folder + "/node.key";
  auto a = NodeKey::loadOrCreate(path);
  ASSERT_TRUE(a.ok()) << a.error().message;
  EXPECT_EQ(modeOf(folder), 0700u);
  EXPECT_EQ(modeOf(path), 0600u);
  auto b = NodeKey::loadOrCreate(path);
  ASSERT_TRUE(b.ok()) << b.error().message;
  EXPECT_EQ(a->publicKey(), b->publicKey());
  std::ofstream(dir.file("plain")) << "x";
  auto c = NodeKey::loadOrCreate(dir.file("plain") + "/sub/node.key");
  ASSERT_FALSE(c.ok());
  EXPECT_NE(c.error().message.find("cannot create the key file's folder"), std::string::npos) << c.error().message;
}

TEST(KeyFile, MalformedContentAndNonFilesAreRefused) {
  TempDir dir;
  const std::string path = dir.file("bad.key");
  auto write = [&](const std::string& text) {
    std::filesystem::remove(path);
    std::ofstream(path) << text;
    ::chmod(path.c_str(), 0600);
  };
  write("tgw-private:1234\n");
  EXPECT_FALSE(NodeKey::load(path).ok());
  write("secret " + std::string(64, 'a') + "\n");
  EXPECT_FALSE(NodeKey::load(path).ok());
  write("tgw-private:" + std::string(64, 'a') + "\nmore\n");
  EXPECT_FALSE(NodeKey::load(path).ok());
  write("tgw-private:" + std::string(64, 'a') + "\n");
  EXPECT_TRUE(NodeKey::load(path).ok());
  EXPECT_FALSE(NodeKey::load(dir.file("missing.key")).ok());
  // A symbolic link is not followed.
  const std::string link = dir.file("link.key");
  ASSERT_EQ(::symlink(path.c_str(), link.c_str()), 0);
  EXPECT_FALSE(NodeKey::load(link).ok());
}

}  // namespace
}  // namespace tgw::crypto
