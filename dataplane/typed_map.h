// TypedMap<K, V>: a BPF map handle whose key and value types are the C structs from
// xdp/include (STYLE.md rule 2). bind() checks sizeof(K) / sizeof(V) against the map's
// definition in the loaded object once, at start-up, so a header edited on one side only is
// an error at load time instead of silently garbled counters or forwarding entries.
#pragma once

#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include <cerrno>
#include <cstring>
#include <string>
#include <type_traits>
#include <vector>

#include "base/result.h"

namespace tgw::dataplane {

template <typename K, typename V>
class TypedMap {
  static_assert(std::is_trivially_copyable_v<K> && std::is_trivially_copyable_v<V>,
                "map keys and values are plain C structs");

 public:
  TypedMap() = default;

  // Binds to `map` of a loaded object. Fails if the map is not loaded or its key/value
  // sizes differ from the C++ types.
  static Result<TypedMap> bind(const bpf_map* map) {
    if (map == nullptr) return fail("bpf map missing from object");
    const std::string name = bpf_map__name(map);
    if (bpf_map__key_size(map) != sizeof(K))
      return fail("bpf map " + name + ": key size " + std::to_string(bpf_map__key_size(map)) +
                  " in the object, " + std::to_string(sizeof(K)) + " in C++");
    if (bpf_map__value_size(map) != sizeof(V))
      return fail("bpf map " + name + ": value size " +
                  std::to_string(bpf_map__value_size(map)) + " in the object, " +
                  std::to_string(sizeof(V)) + " in C++");
    const int fd = bpf_map__fd(map);
    if (fd < 0) return fail("bpf map " + name + " is not loaded");
    const bpf_map_type type = bpf_map__type(map);
    const bool perCpu = type == BPF_MAP_TYPE_PERCPU_ARRAY || type == BPF_MAP_TYPE_PERCPU_HASH ||
                        type == BPF_MAP_TYPE_LRU_PERCPU_HASH;
    TypedMap m;
    m.fd_ = fd;
    m.name_ = name;
    m.perCpu_ = perCpu;
    m.maxEntries_ = bpf_map__max_entries(map);
    if (perCpu) {
      const int cpus = libbpf_num_possible_cpus();
      if (cpus <= 0) return fail("cannot count possible CPUs");
      m.cpus_ = static_cast<unsigned>(cpus);
    }
    return m;
  }

  int fd() const { return fd_; }
  const std::string& name() const { return name_; }
  bool perCpu() const { return perCpu_; }
  unsigned possibleCpus() const { return cpus_; }
  uint32_t maxEntries() const { return maxEntries_; }

  // Plain maps: one value.
  Result<V> lookup(const K& key) const {
    if (perCpu_) return fail("bpf map " + name_ + " is per-CPU: use lookupPerCpu");
    V value{};
    if (bpf_map_lookup_elem(fd_, &key, &value) != 0) return errnoFailure("lookup");
    return value;
  }

  Result<void> update(const K& key, const V& value, uint64_t flags = BPF_ANY) {
    if (perCpu_) return fail("bpf map " + name_ + " is per-CPU: update per CPU is not wrapped");
    if (bpf_map_update_elem(fd_, &key, &value, flags) != 0) return errnoFailure("update");
    return {};
  }

  Result<void> erase(const K& key) {
    if (bpf_map_delete_elem(fd_, &key) != 0) return errnoFailure("delete");
    return {};
  }

  // Per-CPU maps: one value per possible CPU. The kernel lays them out 8-byte aligned.
  Result<std::vector<V>> lookupPerCpu(const K& key) const {
    static_assert(sizeof(V) % 8 == 0, "per-CPU values are copied in 8-byte strides");
    if (!perCpu_) return fail("bpf map " + name_ + " is not per-CPU");
    std::vector<V> values(cpus_);
    if (bpf_map_lookup_elem(fd_, &key, values.data()) != 0) return errnoFailure("lookup");
    return values;
  }

 private:
  Unexpected<Error> errnoFailure(const char* op) const {
    const int err = errno;
    return fail("bpf map " + name_ + ": " + op + ": " + std::strerror(err), err);
  }

  int fd_ = -1;
  std::string name_;
  bool perCpu_ = false;
  unsigned cpus_ = 1;
  uint32_t maxEntries_ = 0;
};

}  // namespace tgw::dataplane
