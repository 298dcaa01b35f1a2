// "Every counter in the stats JSON appears in the exposition": each number of a stats JSON is
// replaced by a value of its own, and the exposition must carry each such value in exactly one
// sample. Used on a hand-written JSON (unit) and on a live daemon's (integration).
#pragma once

#include <map>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

namespace tgw::metrics::testing {

// The numbers of `j` (histogram objects, which expose() turns into buckets, left alone),
// each replaced by a distinct value from `next` on; returns their JSON pointers by value.
inline std::map<uint64_t, std::string> numberLeaves(nlohmann::json& j, uint64_t& next, const std::string& where = "") {
  std::map<uint64_t, std::string> out;
  if (j.is_object() && j.contains("bounds_s")) return out;
  if (j.is_number()) {
    j = next;
    out[next++] = where;
  } else if (j.is_object()) {
    for (auto& [k, v] : j.items()) out.merge(numberLeaves(v, next, where + "/" + k));
  } else if (j.is_array()) {
    for (size_t i = 0; i < j.size(); ++i) out.merge(numberLeaves(j[i], next, where + "/" + std::to_string(i)));
  }
  return out;
}

// Each sample's value, with how many samples carry it.
inline std::map<std::string, int> sampleValues(const std::string& text) {
  std::map<std::string, int> out;
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty() || line[0] == '#') continue;
    out[line.substr(line.rfind(' ') + 1)] += 1;
  }
  return out;
}

// The leaves (by JSON pointer) whose value is in no sample, or in more than one.
inline std::vector<std::string> missingOrDuplicated(const std::map<uint64_t, std::string>& leaves, const std::string& text) {
  const auto values = sampleValues(text);
  std::vector<std::string> bad;
  for (const auto& [v, where] : leaves) {
    auto it = values.find(std::to_string(v));
    if (it == values.end() || it->second != 1) bad.push_back(where);
  }
  return bad;
}

}  // namespace tgw::metrics::testing
