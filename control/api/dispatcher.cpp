#include "api/dispatcher.h"

#include <grp.h>
#include <pwd.h>

#include <exception>
#include <string>
#include <vector>

#include "base/log.h"

namespace tgw::api {

void Dispatcher::add(std::string cmd, std::string help, Handler handler) {
  handlers_[std::move(cmd)] = Entry{std::move(help), std::move(handler), nullptr};
}

void Dispatcher::addAsync(std::string cmd, std::string help, AsyncHandler handler) {
  handlers_[std::move(cmd)] = Entry{std::move(help), nullptr, std::move(handler)};
}

Json Dispatcher::commands() const {
  Json out = Json::object();
  for (const auto& [name, e] : handlers_) out[name] = e.help;
  return out;
}

namespace {

std::string replyLine(bool ok, Json body) {
  Json r = {{"ok", ok}};
  r[ok ? "result" : "error"] = std::move(body);
  // Invalid UTF-8 in a handler's strings must not throw here: replaced, not fatal.
  return r.dump(-1, ' ', false, Json::error_handler_t::replace) + "\n";
}

std::string replyLine(Result<Json> r) {
  if (!r) return replyLine(false, r.error().message);
  return replyLine(true, std::move(*r));
}

}  // namespace

// A parsed request, or the error line to reply with.
struct Dispatcher::Request {
  const Entry* entry = nullptr;  // null: `error` is the reply
  std::string name;
  Json args;
  std::string error;
};

Dispatcher::Request Dispatcher::parse(std::string_view line) const {
  Request out;
  Json req = Json::parse(line, nullptr, /*allow_exceptions=*/false);
  if (req.is_discarded() || !req.is_object()) return out.error = replyLine(false, "request is not a JSON object"), out;
  auto cmd = req.find("cmd");
  if (cmd == req.end() || !cmd->is_string()) return out.error = replyLine(false, "request has no \"cmd\" string"), out;
  out.args = Json::object();
  if (auto a = req.find("args"); a != req.end()) {
    if (!a->is_object()) return out.error = replyLine(false, "\"args\" must be an object"), out;
    out.args = *a;
  }
  out.name = cmd->get<std::string>();
  if (out.name == "help") return out.error = replyLine(true, commands()), out;
  auto it = handlers_.find(out.name);
  if (it == handlers_.end()) {
    // Names the commands this daemon serves: a relay has no edge commands (peers, paths...)
    // and an edge no relay ones (allocations).
    std::string served;
    for (const auto& [name, e] : handlers_) served += (served.empty() ? "" : ", ") + name;
    return out.error = replyLine(false, "unknown command \"" + out.name + "\": this tgwd serves " + served +
                                            " (the others belong to a role it does not run)"),
           out;
  }
  out.entry = &it->second;
  return out;
}

namespace {

// A handler bug must not take the daemon down; report it and go on.
std::string internalError(const std::string& cmd, const std::exception& e) {
  log::error("control_handler_failed", {{"cmd", cmd}, {"what", e.what()}});
  return replyLine(false, std::string("internal error: ") + e.what());
}

}  // namespace

void Dispatcher::dispatch(std::string_view line, std::function<void(std::string)> done) const {
  Request req = parse(line);
  if (req.entry == nullptr) return done(std::move(req.error));
  if (req.entry->handler) return done(runSync(req));
  // `done` runs once whatever the handler does (replies twice, throws before or after replying).
  auto once = std::make_shared<std::function<void(std::string)>>(std::move(done));
  Reply reply = [once, name = req.name](Result<Json> r) {
    if (!*once) {
      log::warn("control_reply_twice", {{"cmd", name}});
      return;
    }
    std::exchange(*once, nullptr)(replyLine(std::move(r)));
  };
  try {
    req.entry->async(req.args, reply);
  } catch (const std::exception& e) {
    if (*once) std::exchange(*once, nullptr)(internalError(req.name, e));
  }
}

std::string Dispatcher::runSync(const Request& req) const {
  try {
    return replyLine(req.entry->handler(req.args));
  } catch (const std::exception& e) {
    return internalError(req.name, e);
  }
}

std::string Dispatcher::handleLine(std::string_view line) const {
  Request req = parse(line);
  if (req.entry == nullptr) return std::move(req.error);
  if (!req.entry->handler) return replyLine(false, "\"" + req.name + "\" answers later: use the control socket");
  return runSync(req);
}

bool AccessPolicy::allows(const PeerCred& peer) const {
  if (peer.uid == 0 || peer.uid == daemonUid_) return true;
  if (!group_) return false;
  if (peer.gid == *group_) return true;
  // Supplementary groups of the peer's user.
  passwd pw{};
  passwd* found = nullptr;
  std::vector<char> buf(16384);
  if (getpwuid_r(peer.uid, &pw, buf.data(), buf.size(), &found) != 0 || found == nullptr) return false;
  int n = 64;
  std::vector<gid_t> groups(static_cast<size_t>(n));
  if (getgrouplist(pw.pw_name, pw.pw_gid, groups.data(), &n) < 0) {
    groups.resize(static_cast<size_t>(n));
    if (getgrouplist(pw.pw_name, pw.pw_gid, groups.data(), &n) < 0) return false;
  }
  for (int i = 0; i < n; ++i) {
    if (groups[static_cast<size_t>(i)] == *group_) return true;
  }
  return false;
}

}  // namespace tgw::api
