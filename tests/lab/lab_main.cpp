// main() for the lab suite: skips the whole binary (exit 77, which meson counts as
// skipped) when the lab cannot run here, and also when every test in it skipped, so a
// missing tool or feature never shows up as a pass.
#include <gtest/gtest.h>

#include <cstdio>

#include "lab.h"

int main(int argc, char** argv) {
  testing::InitGoogleTest(&argc, argv);
  if (auto r = tgw::lab::available(); !r) {
    std::fprintf(stderr, "SKIP: lab tests cannot run here: %s\n", r.error().message.c_str());
    return 77;
  }
  tgw::lab::cleanUpOnSignal();  // a runner's timeout must not leave namespaces behind
  int rc = RUN_ALL_TESTS();
  const auto* unit = testing::UnitTest::GetInstance();
  if (rc == 0 && unit->test_to_run_count() > 0 &&
      unit->skipped_test_count() == unit->test_to_run_count()) {
    std::fprintf(stderr, "SKIP: every test in this binary skipped (reasons above)\n");
    return 77;
  }
  return rc;
}
