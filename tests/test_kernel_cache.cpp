// Kernel timings memoized by content, simulated in a child process, shared through a cache directory.
#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <functional>

#include <unistd.h>

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include "support/isolated.h"
#include "trnsim/core/error.h"
#include "trnsim/core/process.h"
#include "trnsim/hw/chip.h"
#include "trnsim/runtime/kernel_cache.h"
#include "trnsim/runtime/kernel_runner.h"

using namespace trnsim;

namespace {

lowering::KernelRequest gemm(std::int64_t m, std::int64_t k, std::int64_t n, DType dtype = DType::bf16) {
    lowering::KernelRequest r;
    r.op = "gemm";
    r.m = m;
    r.k = k;
    r.n = n;
    r.dtype = dtype;
    return r;
}

lowering::KernelRequest rowwise(const std::string& op, std::int64_t rows, std::int64_t cols) {
    lowering::KernelRequest r;
    r.op = op;
    r.rows = rows;
    r.cols = cols;
    return r;
}

std::filesystem::path fresh_dir(const std::string& name) {
    const auto dir = std::filesystem::temp_directory_path() / ("trnsim_test_" + name + std::to_string(::getpid()));
    std::filesystem::remove_all(dir);
    return dir;
}

}  // namespace

TEST_CASE("a kernel's cache key changes with the operator, its shape, its dtype and any chip parameter",
          "[kernel_cache]") {
    const Config trn2 = hw::resolve_chip_config("trn2", {}, {});
    const std::string k = runtime::KernelCache::key(gemm(512, 1024, 768), trn2);
    CHECK(k.size() == 32);
    CHECK(runtime::KernelCache::key(gemm(512, 1024, 768), hw::resolve_chip_config("trn2", {}, {})) == k);
    CHECK(runtime::KernelCache::key(gemm(512, 1024, 769), trn2) != k);
    CHECK(runtime::KernelCache::key(gemm(512, 1024, 768, DType::fp8_e4m3), trn2) != k);
    CHECK(runtime::KernelCache::key(rowwise("rmsnorm", 512, 1024), trn2) != k);
    CHECK(runtime::KernelCache::key(gemm(512, 1024, 768), hw::resolve_chip_config("trn3", {}, {})) != k);
    CHECK(runtime::KernelCache::key(gemm(512, 1024, 768),
                                    hw::resolve_chip_config("trn2", {}, {"chip.memory.hbm.timing.rp=17ns"})) != k);
    // Step-level parameters (energies per event, the logical-core grouping, the collective streams and
    // their reduction rate and arbitration) do not change a kernel; the Vector engine's fast exp does.
    CHECK(runtime::KernelCache::key(gemm(512, 1024, 768),
                                    hw::resolve_chip_config("trn2", {},
                                                            {"chip.energy.mac_bf16=1pJ", "chip.lnc=1",
                                                             "chip.cc_cores=3", "chip.core.dma.reduce_rate=1",
                                                             "chip.core.dma.arbitration=strict-priority"})) == k);
    CHECK(runtime::KernelCache::key(gemm(512, 1024, 768),
                                    hw::resolve_chip_config("trn2", {}, {"chip.core.vector_engine.fast_exp=4"})) != k);
}

TEST_CASE("kernel timings come from the NeuronCore model, once per distinct kernel", "[kernel_cache]") {
    const Config trn2 = hw::resolve_chip_config("trn2", {}, {});
    runtime::KernelCache cache;
    // Misses used to be simulated together in one elaboration, where some kernels' HBM schedules differed
    // slightly from alone: the third one, with the default run's other kernels, had 82144 activates
    // against 82272 alone.
    const std::vector<lowering::KernelRequest> requests = {gemm(512, 1024, 768), rowwise("rmsnorm", 1024, 2048),
                                                           gemm(4096, 8192, 128), gemm(512, 1024, 768)};
    const auto t = cache.time(requests, trn2);
    REQUIRE(t.size() == 4);
    CHECK(cache.misses() == 3);
    CHECK(cache.hits() == 1);
    CHECK(t[0].time_s == t[3].time_s);
    CHECK(t[0].flops == 2.0 * 512 * 1024 * 768);
    CHECK(t[0].tensor_macs == 512ull * 1024 * 768);
    // Exactly as each kernel simulated on its own.
    for (std::size_t i = 0; i < 3; ++i) {
        const std::string alone = testing::run_isolated([&] {
            runtime::KernelOptions o;
            o.request = requests[i];
            const auto r = runtime::run_kernel(o, trn2);
            return nlohmann::json{{"time_s", r.time_s},
                                  {"read", r.hbm_read_bytes},
                                  {"access", r.memory_summary.at("access_energy_j")},
                                  {"standby", r.memory_summary.at("standby_w_per_stack")}}
                .dump();
        });
        const auto j = nlohmann::json::parse(alone);
        INFO(i);
        CHECK(t[i].time_s == j["time_s"].get<double>());
        CHECK(t[i].hbm_read_bytes == j["read"].get<std::uint64_t>());
        CHECK(t[i].memory_access_j == j["access"].get<double>());
        CHECK(t[i].memory_standby_w == j["standby"].get<double>());
        CHECK(t[i].memory_access_j > 0);
        CHECK(t[i].memory_standby_w > 0);
    }
    // A second call is served from memory.
    const auto again = cache.time({requests[1]}, trn2);
    CHECK(again[0].time_s == t[1].time_s);
    CHECK(cache.misses() == 3);
}

TEST_CASE("a cache directory serves later processes and survives a damaged entry", "[kernel_cache]") {
    const Config trn2 = hw::resolve_chip_config("trn2", {}, {});
    const auto dir = fresh_dir("kcache");
    const std::vector<lowering::KernelRequest> requests = {gemm(256, 512, 512), rowwise("gelu", 256, 1024)};
    double first = 0;
    {
        runtime::KernelCache cache(dir.string());
        first = cache.time(requests, trn2)[0].time_s;
        CHECK(cache.misses() == 2);
    }
    {
        runtime::KernelCache cache(dir.string());
        CHECK(cache.time(requests, trn2)[0].time_s == first);
        CHECK(cache.misses() == 0);
        CHECK(cache.hits() == 2);
    }
    std::ofstream(dir / (runtime::KernelCache::key(requests[0], trn2) + ".json")) << "{ not json";
    {
        runtime::KernelCache cache(dir.string());
        CHECK(cache.time(requests, trn2)[0].time_s == first);
        CHECK(cache.misses() == 1);
    }
    std::filesystem::remove_all(dir);
}

TEST_CASE("an unusable cache directory or an impossible kernel is a clear error", "[kernel_cache]") {
    const auto file = fresh_dir("kcache_file");
    std::ofstream(file.string()) << "x";
    CHECK_THROWS_AS(runtime::KernelCache(file.string()), UserError);
    std::filesystem::remove(file);
    runtime::KernelCache cache;
    CHECK_THROWS_WITH(cache.time({gemm(0, 512, 512)}, hw::resolve_chip_config("trn2", {}, {})),
                      Catch::Contains("gemm m=0 k=512 n=512"));
}

TEST_CASE("sweep workers writing one cache directory at once leave whole entries and no temporaries",
          "[kernel_cache][sweep]") {
    const auto dir = fresh_dir("kcache_concurrent");
    const std::vector<lowering::KernelRequest> requests = {gemm(256, 512, 512), rowwise("gelu", 256, 1024)};
    std::vector<std::function<std::string()>> workers(4, [&] {
        runtime::KernelCache cache(dir.string());
        const auto t = cache.time(requests, hw::resolve_chip_config("trn2", {}, {}));
        return nlohmann::json{t[0].time_s, t[1].time_s}.dump();
    });
    const std::vector<std::string> out = run_isolated_all(workers, 4);
    for (const auto& o : out) CHECK(o == out[0]);
    std::size_t entries = 0;
    for (const auto& e : std::filesystem::directory_iterator(dir)) {
        INFO(e.path());
        CHECK(e.path().extension() == ".json");
        std::ifstream in(e.path());
        CHECK_NOTHROW(nlohmann::json::parse(in));
        ++entries;
    }
    CHECK(entries == 2);
    std::filesystem::remove_all(dir);
}

TEST_CASE("a cache directory keeps its memo records least recently used first out, within a size", "[kernel_cache]") {
    const auto dir = fresh_dir("trim");
    const runtime::KernelCache cache(dir.string());
    // Five records of 100 bytes, memo-0 the oldest; a kernel entry, a file that is not a record, another
    // process's temporary file, which trimming leaves alone, and a day-old one, which it removes.
    const auto now = std::filesystem::file_time_type::clock::now();
    for (int i = 0; i < 5; ++i) {
        const std::string name = "memo-" + std::to_string(i) + ".records";
        cache.store_text(name, std::string(100, 'r'));
        std::filesystem::last_write_time(dir / name, now - std::chrono::hours(10 - i));
    }
    cache.store_text("0123.json", std::string(1000, 'k'));
    cache.store_text("memo-notes.txt", std::string(1000, 'n'));
    std::filesystem::last_write_time(dir / "memo-notes.txt", now - std::chrono::hours(20));
    cache.store_text("memo-9.records.tmp.host.1", std::string(1000, 't'));
    cache.store_text("memo-8.records.tmp.host.2", std::string(1000, 't'));
    std::filesystem::last_write_time(dir / "memo-8.records.tmp.host.2", now - std::chrono::hours(25));
    // Using memo-1 makes it the most recent.
    cache.touch("memo-1.records");
    // At most 300 bytes, memo-0 (just written, say) kept whatever its age: it and the two most recently used
    // of the others stay.
    cache.trim("memo-", ".records", 300, "memo-0.records");
    const auto left = [&] {
        std::vector<std::string> out;
        for (const auto& e : std::filesystem::directory_iterator(dir)) out.push_back(e.path().filename().string());
        std::sort(out.begin(), out.end());
        return out;
    };
    CHECK(left() == std::vector<std::string>{"0123.json", "memo-0.records", "memo-1.records", "memo-4.records",
                                             "memo-9.records.tmp.host.1", "memo-notes.txt"});
    // Within the size, nothing goes; without a directory, nothing happens.
    cache.trim("memo-", ".records", 300, "");
    CHECK(left().size() == 6);
    runtime::KernelCache().trim("memo-", ".records", 0, "");
    std::filesystem::remove_all(dir);
}
