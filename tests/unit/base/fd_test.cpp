#include "base/fd.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/socket.h>

namespace tgw {
namespace {

TEST(UniqueFd, ClosesOnDestructionAndMove) {
  int raw = -1;
  {
    UniqueFd f(::socket(AF_INET, SOCK_DGRAM, 0));
    raw = f.get();
    ASSERT_GE(raw, 0);
    UniqueFd g(std::move(f));
    EXPECT_FALSE(f.valid());
    EXPECT_EQ(g.get(), raw);
  }
  EXPECT_EQ(fcntl(raw, F_GETFD), -1) << "descriptor still open";
}

}  // namespace
}  // namespace tgw
