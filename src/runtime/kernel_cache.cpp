#include "trnsim/runtime/kernel_cache.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <thread>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "trnsim/core/error.h"
#include "trnsim/core/process.h"
#include "trnsim/runtime/kernel_runner.h"

namespace trnsim::runtime {

const char* const k_kernel_model_revision = "trnsim-0.1.0/kernel-model-2026-11-27";

namespace {

nlohmann::json to_json(const KernelTiming& t) {
    return {{"time_s", t.time_s},
            {"flops", t.flops},
            {"tensor_macs", t.tensor_macs},
            {"hbm_read_bytes", t.hbm_read_bytes},
            {"hbm_write_bytes", t.hbm_write_bytes},
            {"memory_access_j", t.memory_access_j},
            {"memory_standby_w", t.memory_standby_w},
            {"sbuf_peak_bytes", t.sbuf_peak_bytes},
            {"utilization", t.utilization}};
}

KernelTiming from_json(const nlohmann::json& j) {
    KernelTiming t;
    t.time_s = j.at("time_s").get<double>();
    t.flops = j.at("flops").get<double>();
    t.tensor_macs = j.at("tensor_macs").get<std::uint64_t>();
    t.hbm_read_bytes = j.at("hbm_read_bytes").get<std::uint64_t>();
    t.hbm_write_bytes = j.at("hbm_write_bytes").get<std::uint64_t>();
    t.memory_access_j = j.at("memory_access_j").get<double>();
    t.memory_standby_w = j.at("memory_standby_w").get<double>();
    t.sbuf_peak_bytes = j.at("sbuf_peak_bytes").get<std::uint64_t>();
    t.utilization = j.at("utilization").get<std::map<std::string, double>>();
    return t;
}

std::string describe(const lowering::KernelRequest& r) {
    if (r.op == "gemm") return fmt::format("gemm m={} k={} n={} {}", r.m, r.k, r.n, dtype_name(r.dtype));
    if (lowering::is_flash(r.op)) {
        return fmt::format("{} queries={} keys={} head_dim={}{} {}{}", r.op, r.m, r.n, r.k,
                           r.causal ? fmt::format(" causal q_offset={}", r.q_offset) : "", dtype_name(r.dtype),
                           r.dropout ? " dropout" : "");
    }
    return fmt::format("{} rows={} cols={} {}", r.op, r.rows, r.cols, dtype_name(r.dtype));
}

}  // namespace

KernelCache::KernelCache(std::string directory) : m_directory(std::move(directory)) {
    if (m_directory.empty()) return;
    std::error_code ec;
    std::filesystem::create_directories(m_directory, ec);
    if (ec || !std::filesystem::is_directory(m_directory)) {
        throw UserError(fmt::format("--cache {}: cannot create or use this directory ({})", m_directory,
                                    ec ? ec.message() : "not a directory"));
    }
}

std::string KernelCache::chip_text(const Config& config) {
    std::string text;
    for (const auto& [k, v] : config.values()) {  // std::map: sorted, the same order everywhere
        // Every chip parameter a kernel simulation reads; not the step-level ones (per-event energies and
        // static power, the logical-core grouping, the collective streams and their DMA reduction rate and
        // arbitration), so that sweeping those reuses the kernels.
        if (k.rfind("chip.", 0) != 0 || k.rfind("chip.energy.", 0) == 0 || k == "chip.lnc" || k == "chip.cc_cores" ||
            k == "chip.core.dma.reduce_rate" || k == "chip.core.dma.arbitration")
            continue;
        text += k + "=" + v.text + "\n";
    }
    return text;
}

std::string KernelCache::key(const lowering::KernelRequest& r, const std::string& chip_text) {
    // The flash kernels' mask fields are added for them only, and dropout only when on, so that the other
    // kernels keep their keys.
    const std::string flash = lowering::is_flash(r.op) ? fmt::format("causal={}\nq_offset={}\n{}", r.causal, r.q_offset,
                                                                     r.dropout ? "dropout=1\n" : "")
                                                       : "";
    return stable_hash(fmt::format("{}\nop={}\nm={}\nk={}\nn={}\nrows={}\ncols={}\ndtype={}\n{}",
                                   k_kernel_model_revision, r.op, r.m, r.k, r.n, r.rows, r.cols, dtype_name(r.dtype),
                                   flash) +
                       chip_text);
}

std::string KernelCache::key(const lowering::KernelRequest& r, const Config& config) {
    return key(r, chip_text(config));
}

bool KernelCache::load(const std::string& key, KernelTiming& out) const {
    const std::string text = load_text(key + ".json");
    if (text.empty()) return false;
    try {
        const nlohmann::json j = nlohmann::json::parse(text);
        if (j.value("revision", "") != k_kernel_model_revision) return false;
        out = from_json(j.at("timing"));
        return true;
    } catch (const std::exception&) {
        return false;  // a damaged entry is simulated again and rewritten
    }
}

void KernelCache::store(const std::string& key, const KernelTiming& t) const {
    store_text(key + ".json",
               nlohmann::json{{"revision", k_kernel_model_revision}, {"timing", to_json(t)}}.dump() + "\n");
}

std::string KernelCache::load_text(const std::string& name) const {
    if (m_directory.empty()) return {};
    return read_file((std::filesystem::path(m_directory) / name).string()).value_or(std::string());
}

void KernelCache::store_text(const std::string& name, const std::string& text) const {
    if (m_directory.empty()) return;
    const auto path = std::filesystem::path(m_directory) / name;
    // Written whole, then renamed: a reader (another sweep worker) sees the old file, none, or the new one.
    // The temporary name is unique per host and process, so that workers on several machines sharing the
    // directory (a sweep's shards on a network file system) never write into one temporary file.
    char host[256] = {};
    ::gethostname(host, sizeof host - 1);
    const auto tmp = path.string() + fmt::format(".tmp.{}.{}", host, static_cast<long>(::getpid()));
    {
        std::ofstream out(tmp, std::ios::binary);
        out << text;
        out.close();
        if (!out) {
            std::remove(tmp.c_str());
            throw UserError(fmt::format("--cache {}: cannot write {}", m_directory, tmp));
        }
    }
    std::error_code ec;
    std::filesystem::rename(tmp, path, ec);
    if (ec) {
        std::remove(tmp.c_str());
        throw UserError(fmt::format("--cache {}: cannot write {} ({})", m_directory, path.string(), ec.message()));
    }
}

void KernelCache::touch(const std::string& name) const {
    if (m_directory.empty()) return;
    // The current time, as the file system has it: write permission is enough (not ownership, which an
    // explicit time needs: a cache shared by several users), and a network file system's server sets it.
    const std::string path = (std::filesystem::path(m_directory) / name).string();
    ::utimensat(AT_FDCWD, path.c_str(), nullptr, 0);
}

void KernelCache::trim(const std::string& prefix, const std::string& suffix, std::uint64_t max_bytes,
                       const std::string& keep) const {
    if (m_directory.empty()) return;
    struct Entry {
        std::filesystem::file_time_type time;
        std::string name;
        std::uint64_t bytes;
    };
    std::vector<Entry> entries;
    std::uint64_t total = 0;
    const auto stale = std::filesystem::file_time_type::clock::now() - k_stale_temporary;
    std::error_code ec;
    for (std::filesystem::directory_iterator it(m_directory, ec), end; !ec && it != end; it.increment(ec)) {
        const std::string name = it->path().filename().string();
        const bool temporary = name.find(".tmp.") != std::string::npos;
        const bool record = !temporary && name.size() >= prefix.size() + suffix.size() && name.rfind(prefix, 0) == 0 &&
                            name.compare(name.size() - suffix.size(), suffix.size(), suffix) == 0;
        if (!temporary && !record) continue;  // a kernel entry: not even looked at
        std::error_code e1, e2;
        const auto time = it->last_write_time(e1);
        // Another process's temporary (store_text) is left alone, unless it is old enough to be a dead one's.
        if (temporary) {
            if (!e1 && time < stale) std::filesystem::remove(it->path(), e2);
            continue;
        }
        const auto bytes = it->file_size(e2);
        if (e1 || e2) continue;
        total += bytes;
        if (name != keep) entries.push_back({time, name, bytes});
    }
    std::sort(entries.begin(), entries.end(),
              [](const Entry& a, const Entry& b) { return a.time != b.time ? a.time < b.time : a.name < b.name; });
    for (const Entry& e : entries) {
        if (total <= max_bytes) break;
        // Gone either way when another process removed it first: not counted twice.
        std::error_code e1;
        std::filesystem::remove(std::filesystem::path(m_directory) / e.name, e1);
        if (!e1) total -= e.bytes;
    }
}

std::vector<KernelTiming> KernelCache::time(const std::vector<lowering::KernelRequest>& requests,
                                            const Config& config) {
    const std::string chip = chip_text(config);
    std::vector<std::string> keys;
    std::vector<std::size_t> missing;  // index of the first request of each missing key
    std::map<std::string, std::size_t> pending;
    for (std::size_t i = 0; i < requests.size(); ++i) {
        keys.push_back(key(requests[i], chip));
        const std::string& k = keys.back();
        if (m_memory.count(k) || pending.count(k)) continue;
        KernelTiming t;
        if (load(k, t)) {
            m_memory.emplace(k, t);
            continue;
        }
        pending.emplace(k, i);
        missing.push_back(i);
    }
    m_misses += missing.size();
    m_hits += requests.size() - missing.size();

    if (!missing.empty()) {
        // Each missing kernel in a child process of its own, exactly as `trnsim kernel` simulates it, as many
        // at a time as there are cores. (Kernels sharing one elaboration, even on their own cores and
        // memories, meet in the same delta cycles and the shared wake-up queue, which reorders their
        // same-time events: their HBM command schedules came out slightly differently than alone.) The
        // largest first (by the elements they move, a proxy for their DMA traffic, which dominates their
        // simulation), so that the last to finish are short.
        auto size = [](const lowering::KernelRequest& r) {
            return r.op == "gemm" ? static_cast<double>(r.m) * static_cast<double>(r.k) +
                                        static_cast<double>(r.k) * static_cast<double>(r.n) +
                                        static_cast<double>(r.m) * static_cast<double>(r.n)
                                  : static_cast<double>(r.rows) * static_cast<double>(r.cols);
        };
        std::vector<std::size_t> order(missing.size());
        for (std::size_t j = 0; j < order.size(); ++j) order[j] = j;
        std::stable_sort(order.begin(), order.end(), [&](std::size_t x, std::size_t y) {
            return size(requests[missing[x]]) > size(requests[missing[y]]);
        });
        std::vector<std::function<std::string()>> bodies;
        for (const std::size_t j : order) {
            bodies.push_back([&requests, &config, i = missing[j]] {
                KernelOptions o;
                o.request = requests[i];
                const KernelResult r = run_kernel(o, config);
                KernelTiming t;
                t.time_s = r.time_s;
                t.flops = r.flops;
                t.tensor_macs = r.tensor_macs;
                t.hbm_read_bytes = r.hbm_read_bytes;
                t.hbm_write_bytes = r.hbm_write_bytes;
                const auto summary = [&](const char* key) {
                    const auto e = r.memory_summary.find(key);
                    return e == r.memory_summary.end() ? 0.0 : e->second;
                };
                t.memory_access_j = summary("access_energy_j");
                t.memory_standby_w = summary("standby_w_per_stack");
                t.sbuf_peak_bytes = r.sbuf_peak_bytes;
                t.utilization = r.utilization;
                return to_json(t).dump();
            });
        }
        const auto start = std::chrono::steady_clock::now();
        const int jobs = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
        const std::vector<std::string> out = run_isolated_all(bodies, jobs);
        m_wall_s += std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
        for (std::size_t b = 0; b < order.size(); ++b) {
            const std::size_t i = missing[order[b]];
            if (out[b].rfind("error: ", 0) == 0)
                throw UserError(
                    fmt::format("kernel simulation failed ({}): {}", describe(requests[i]), out[b].substr(7)));
            const KernelTiming t = from_json(nlohmann::json::parse(out[b]));
            m_memory.emplace(keys[i], t);
            store(keys[i], t);
        }
    }

    std::vector<KernelTiming> result;
    result.reserve(requests.size());
    for (const auto& k : keys) result.push_back(m_memory.at(k));
    return result;
}

}  // namespace trnsim::runtime
