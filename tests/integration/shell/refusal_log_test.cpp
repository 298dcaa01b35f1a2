// RefusalLog (shell/portmap_shell.h): a router's refusal of a mapping or pinhole is said once
// at warn, with the protocol, the router and the reason; the same refusal on each retry is
// not said again, another one is, and one after a mapping (or a new router) is.
#include "shell/portmap_shell.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "base/log.h"

namespace tgw::shell {
namespace {

class RefusalLogTest : public ::testing::Test {
 protected:
  void SetUp() override {
    log::setSink([this](std::string_view line) {
      if (line.find("portmap_refused") != std::string_view::npos) lines_.emplace_back(line);
    });
  }
  void TearDown() override { log::setSink(nullptr); }

  std::vector<std::string> lines_;
  const std::optional<IpAddr> router_ = IpAddr::parse("192.168.1.1").value();
};

using portmap::Availability;

TEST_F(RefusalLogTest, SaysEachRefusalOnceNotPerRetry) {
  RefusalLog log("portmap_refused");
  // Silence, probing and an answer are no refusal.
  log.note("pcp", Availability::Unavailable, "no answer to 3 probes", router_);
  log.note("pcp", Availability::Probing, "", router_);
  log.note("pcp", Availability::Available, "", router_);
  // A version mismatch is the gateway speaking the other protocol, not a refusal.
  log.note("pcp", Availability::Unavailable, "refused: unsupp_version (the gateway speaks another version)", router_);
  log.note("nat-pmp", Availability::Unavailable, "refused: unsupported_version (the gateway speaks PCP only)", router_);
  EXPECT_TRUE(lines_.empty());
  log.note("pcp", Availability::Unavailable, "refused for now: no_resources", router_);
  ASSERT_EQ(lines_.size(), 1u);
  EXPECT_NE(lines_[0].find("192.168.1.1"), std::string::npos) << lines_[0];
  EXPECT_NE(lines_[0].find("refused for now: no_resources"), std::string::npos) << lines_[0];
  EXPECT_NE(lines_[0].find("pcp"), std::string::npos) << lines_[0];
  // The client asks again (probing, answered) and is refused the same way: not said again.
  log.note("pcp", Availability::Probing, "refused for now: no_resources", router_);
  log.note("pcp", Availability::Available, "", router_);
  log.note("pcp", Availability::Unavailable, "refused for now: no_resources", router_);
  EXPECT_EQ(lines_.size(), 1u);
  // Another protocol's refusal, and another refusal, are said.
  log.note("upnp", Availability::Unavailable, "AddPortMapping refused: 718 ConflictInMappingEntry", router_);
  log.note("pcp", Availability::Unavailable, "refused: not_authorized", router_);
  EXPECT_EQ(lines_.size(), 3u);
  // After a mapping, or with a new router, the same refusal is news again.
  log.forget("pcp");
  log.note("pcp", Availability::Unavailable, "refused: not_authorized", router_);
  EXPECT_EQ(lines_.size(), 4u);
  log.forgetAll();
  log.note("upnp", Availability::Unavailable, "AddPortMapping refused: 718 ConflictInMappingEntry", router_);
  EXPECT_EQ(lines_.size(), 5u);
}

}  // namespace
}  // namespace tgw::shell
