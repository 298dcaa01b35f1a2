// The control API's pure parts: the dispatcher (routing, errors, async replies passed on
// once) and the access policy. The socket server is in tests/integration/api.
#include "api/dispatcher.h"

#include <gtest/gtest.h>

#include <stdexcept>
#include <string>
#include <vector>

namespace tgw::api {
namespace {

Dispatcher makeDispatcher() {
  Dispatcher d;
  d.add("echo", "returns its arguments", [](const Json& args) -> Result<Json> { return args; });
  d.add("broken", "always fails", [](const Json&) -> Result<Json> { return fail("it broke"); });
  d.add("throws", "a handler bug", [](const Json&) -> Result<Json> { throw std::runtime_error("boom"); });
  return d;
}

Json reply(const Dispatcher& d, std::string_view line) {
  std::string out = d.handleLine(line);
  EXPECT_EQ(out.back(), '\n');
  return Json::parse(out);
}

TEST(Dispatcher, RoutesAndReports) {
  auto d = makeDispatcher();
  auto r = reply(d, R"({"cmd":"echo","args":{"x":1}})");
  EXPECT_EQ(r["ok"], true);
  EXPECT_EQ(r["result"]["x"], 1);
  r = reply(d, R"({"cmd":"broken"})");
  EXPECT_EQ(r["ok"], false);
  EXPECT_EQ(r["error"], "it broke");
  r = reply(d, R"({"cmd":"throws"})");
  EXPECT_EQ(r["ok"], false);
  EXPECT_EQ(r["error"], "internal error: boom");
  r = reply(d, R"({"cmd":"help"})");
  EXPECT_EQ(r["result"]["echo"], "returns its arguments");
}

TEST(Dispatcher, BadRequestsGetErrors) {
  auto d = makeDispatcher();
  EXPECT_EQ(reply(d, "not json")["error"], "request is not a JSON object");
  EXPECT_EQ(reply(d, "[1,2]")["error"], "request is not a JSON object");
  EXPECT_EQ(reply(d, R"({"cmd":7})")["error"], "request has no \"cmd\" string");
  EXPECT_EQ(reply(d, R"({"cmd":"echo","args":[1]})")["error"], "\"args\" must be an object");
  EXPECT_EQ(reply(d, R"({"cmd":"nope"})")["error"],
            "unknown command \"nope\": this tgwd serves broken, echo, throws (the others belong to a role it does "
            "not run)");
  EXPECT_EQ(reply(d, std::string("\xff\xfe{", 3))["ok"], false);
}

// An async handler keeps `reply` and answers later; the dispatcher passes that on once.
TEST(Dispatcher, AsyncRepliesOnceLater) {
  Dispatcher d;
  std::vector<Reply> kept;
  d.addAsync("later", "answers when told", [&kept](const Json&, Reply r) { kept.push_back(std::move(r)); });
  d.addAsync("now", "answers at once", [](const Json& args, Reply r) { r(Json{{"n", args.value("n", 0)}}); });
  d.addAsync("throws", "a handler bug", [](const Json&, Reply) { throw std::runtime_error("kaput"); });
  d.addAsync("replies-then-throws", "a worse bug", [](const Json&, Reply r) {
    r(Json("first"));
    throw std::runtime_error("late");
  });
  std::vector<std::string> out;
  auto collect = [&out](std::string line) { out.push_back(std::move(line)); };

  d.dispatch(R"({"cmd":"later"})", collect);
  ASSERT_EQ(kept.size(), 1u);
  EXPECT_TRUE(out.empty()) << "no reply before the handler answers";
  kept[0](Json{{"rtt_ms", 1.5}});
  kept[0](fail("second answer"));  // ignored
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(Json::parse(out[0])["result"]["rtt_ms"], 1.5);

  d.dispatch(R"({"cmd":"now","args":{"n":3}})", collect);
  ASSERT_EQ(out.size(), 2u);
  EXPECT_EQ(Json::parse(out[1])["result"]["n"], 3);

  d.dispatch(R"({"cmd":"throws"})", collect);
  ASSERT_EQ(out.size(), 3u);
  EXPECT_EQ(Json::parse(out[2])["error"], "internal error: kaput");

  d.dispatch(R"({"cmd":"replies-then-throws"})", collect);
  ASSERT_EQ(out.size(), 4u) << "one reply only";
  EXPECT_EQ(Json::parse(out[3])["result"], "first");

  // Errors before the handler are replied at once, as for plain commands.
  d.dispatch(R"({"cmd":"later","args":[]})", collect);
  ASSERT_EQ(out.size(), 5u);
  EXPECT_EQ(Json::parse(out[4])["error"], "\"args\" must be an object");
  EXPECT_EQ(kept.size(), 1u);

  // handleLine cannot wait: it says so and does not start the work.
  EXPECT_EQ(reply(d, R"({"cmd":"later"})")["error"], "\"later\" answers later: use the control socket");
  EXPECT_EQ(kept.size(), 1u);
  EXPECT_EQ(reply(d, R"({"cmd":"help"})")["result"]["later"], "answers when told");
}

TEST(Dispatcher, InvalidUtf8InAResultIsNotFatal) {
  Dispatcher d;
  d.add("bad", "returns bytes that are not UTF-8", [](const Json&) -> Result<Json> { return Json("a\xff"); });
  auto r = reply(d, R"({"cmd":"bad"})");
  EXPECT_EQ(r["ok"], true);
  EXPECT_EQ(r["result"], "a\xEF\xBF\xBD") << "replaced by U+FFFD";
}

TEST(AccessPolicy, RootOwnerAndGroup) {
  AccessPolicy noGroup(1000, std::nullopt);
  EXPECT_TRUE(noGroup.allows({1, 0, 0}));
  EXPECT_TRUE(noGroup.allows({1, 1000, 1000}));
  EXPECT_FALSE(noGroup.allows({1, 1001, 1001}));
  AccessPolicy withGroup(0, gid_t{4242});
  EXPECT_TRUE(withGroup.allows({1, 1001, 4242}));
  EXPECT_FALSE(withGroup.allows({1, 1001, 1001}));
}

}  // namespace
}  // namespace tgw::api
