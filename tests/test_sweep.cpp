// Sweep files (grid and zip expansion, shards, every error path of the spec) and the comparison rules, as
// functions of the trnsim_cli library; test_cli_sweep.cpp runs the same through the binary.
#include <catch2/catch.hpp>

#include <string>
#include <utility>
#include <vector>

#include "compare.h"
#include "metrics.h"
#include "sweep_spec.h"
#include "trnsim/core/error.h"

using namespace trnsim::cli;

namespace {

SweepSpec spec(const std::string& text) {
    return parse_sweep_spec_text(text, "s.yaml");
}

std::string axes_text(const SweepPoint& p) {
    std::string out;
    for (const auto& [k, v] : p.axes) out += (out.empty() ? "" : " ") + k + "=" + v;
    return out;
}

std::string args_text(const SweepPoint& p) {
    std::string out;
    for (const auto& a : p.args) out += (out.empty() ? "" : " ") + a;
    return out;
}

void check_spec_error(const std::string& text, std::initializer_list<std::string> needles) {
    try {
        spec(text);
        FAIL("no error for:\n" << text);
    } catch (const trnsim::UserError& e) {
        const std::string what = e.what();
        INFO(what);
        CHECK(what.rfind("sweep file s.yaml", 0) == 0);
        for (const auto& n : needles) {
            INFO("expected: " << n);
            CHECK(what.find(n) != std::string::npos);
        }
    }
}

}  // namespace

TEST_CASE("A grid is the cartesian product, first axis outermost", "[sweep]") {
    const SweepSpec s = spec(R"(
command: mem
base: {memory: hbm3-6400, requests: 100}
grid:
  request-bytes: [32, 64]
  chip.memory.bandwidth: [1TB/s, 2TB/s, 3TB/s]
)");
    REQUIRE(point_count(s) == 6);
    const auto points = expand(s);
    REQUIRE(points.size() == 6);
    CHECK(axes_text(points[0]) == "request-bytes=32 chip.memory.bandwidth=1TB/s");
    CHECK(axes_text(points[1]) == "request-bytes=32 chip.memory.bandwidth=2TB/s");
    CHECK(axes_text(points[3]) == "request-bytes=64 chip.memory.bandwidth=1TB/s");
    CHECK(axes_text(points[5]) == "request-bytes=64 chip.memory.bandwidth=3TB/s");
    // Options become options, config keys --set, after the base options.
    CHECK(args_text(points[4]) ==
          "mem --memory hbm3-6400 --requests 100 --request-bytes 64 --set chip.memory.bandwidth=2TB/s");
    for (std::size_t i = 0; i < points.size(); ++i) CHECK(points[i].index == i);
}

TEST_CASE("Zip axes advance in lock-step, innermost, under the grid", "[sweep]") {
    const SweepSpec s = spec(R"(
command: run
base: {model: llama3-8b, set: {cluster.link.bandwidth: 100GB/s}}
grid:
  seq: [2048, 4096]
zip:
  cluster: [trn2-ultraserver, trn3-ultraserver-64]
  tp: [8, 16]
)");
    REQUIRE(point_count(s) == 4);
    const auto points = expand(s);
    CHECK(axes_text(points[0]) == "seq=2048 cluster=trn2-ultraserver tp=8");
    CHECK(axes_text(points[1]) == "seq=2048 cluster=trn3-ultraserver-64 tp=16");
    CHECK(axes_text(points[2]) == "seq=4096 cluster=trn2-ultraserver tp=8");
    CHECK(axes_text(points[3]) == "seq=4096 cluster=trn3-ultraserver-64 tp=16");
    CHECK(args_text(points[1]) ==
          "run --model llama3-8b --set cluster.link.bandwidth=100GB/s --seq 2048 --cluster trn3-ultraserver-64 "
          "--tp 16");
}

TEST_CASE("A zip alone, no axes at all, kernel's operator and flags expand as the command expects", "[sweep]") {
    CHECK(point_count(spec("command: mem\nzip: {seed: [1, 2, 3]}\n")) == 3);
    const SweepSpec single = spec("command: mem\nbase: {requests: 10}\n");
    REQUIRE(point_count(single) == 1);
    CHECK(args_text(expand_point(single, 0)) == "mem --requests 10");
    const SweepSpec kernel = spec(R"(
command: kernel
base: {rows: 128, cols: 128, functional: true}
grid: {op: [softmax, gelu], chip: [trn2, trn3]}
)");
    const auto points = expand(kernel);
    REQUIRE(points.size() == 4);
    CHECK(args_text(points[3]) == "kernel gelu --rows 128 --cols 128 --functional --chip trn3");
    check_spec_args(kernel);
    const SweepSpec flag =
        spec("command: kernel\nbase: {op: gemm, m: 128, k: 128, n: 128}\ngrid: {functional: [true, false]}\n");
    CHECK(args_text(expand_point(flag, 0)) == "kernel gemm --m 128 --k 128 --n 128 --functional");
    CHECK(args_text(expand_point(flag, 1)) == "kernel gemm --m 128 --k 128 --n 128");
}

TEST_CASE("Sweep file errors name the file, the key path and what is allowed", "[sweep]") {
    check_spec_error("command: mem\ngird: {seed: [1]}\n", {"gird", "unknown key", "command, base, grid, zip"});
    check_spec_error("command: mem\nzip: {seed: [1, 2], requests: [10]}\n",
                     {"zip.requests", "1 values", "zip.seed has 2", "same length"});
    check_spec_error("command: train\n", {"command", "unknown command 'train'", "run, kernel, mem, collective"});
    check_spec_error("base: {requests: 10}\n", {"command", "missing"});
    check_spec_error("command: mem\ngrid: {seed: []}\n", {"grid.seed", "empty list"});
    check_spec_error("command: mem\ngrid: {seed: 3}\n", {"grid.seed", "expected a list"});
    check_spec_error("command: mem\nbase: {requets: 10}\n",
                     {"base.requets", "unknown option of trnsim mem", "requests"});
    check_spec_error("command: mem\nbase: {json: x.json}\n", {"base.json", "set by trnsim sweep"});
    check_spec_error("command: mem\nbase: {seed: 1}\ngrid: {seed: [1, 2]}\n", {"grid.seed", "also set in base"});
    check_spec_error("command: mem\ngrid: {seed: [1]}\nzip: {seed: [2]}\n", {"zip.seed", "also a grid axis"});
    check_spec_error("command: mem\ngrid: {colour: [red]}\n", {"grid.colour", "not an option of trnsim mem"});
    check_spec_error("command: mem\ngrid: {chip.memory.bandwith: [1TB/s]}\n",
                     {"grid", "unknown key 'chip.memory.bandwith'", "chip.memory.bandwidth"});
    check_spec_error("command: mem\ngrid: {chip.memory.bandwidth: [1TB/s, 3]}\n", {"grid", "chip.memory.bandwidth"});
    check_spec_error("command: kernel\nbase: {op: gemm, functional: maybe}\n", {"base.functional", "true, false"});
    check_spec_error("- a\n- b\n", {"expected a mapping"});
    check_spec_error("command: mem\ngrid: {seed: [1, 2\n", {"line"});
    // The command's own parser: a value of the wrong type.
    try {
        check_spec_args(spec("command: mem\ngrid: {requests: [10, ten]}\n"));
        FAIL("no error");
    } catch (const trnsim::UserError& e) {
        INFO(e.what());
        CHECK(std::string(e.what()).find("grid.requests[1]") != std::string::npos);
    }
}

TEST_CASE("Shards split the points round-robin, and auto reads Slurm and Kubernetes", "[sweep]") {
    const Shard s = parse_shard("2/3", {});
    CHECK(s.index == 2);
    CHECK(s.count == 3);
    CHECK(!s.contains(0));
    CHECK(s.contains(1));
    CHECK(s.contains(4));
    const Shard slurm = parse_shard(
        "auto", {{"SLURM_ARRAY_TASK_ID", "5"}, {"SLURM_ARRAY_TASK_MIN", "1"}, {"SLURM_ARRAY_TASK_COUNT", "8"}});
    CHECK(slurm.index == 5);
    CHECK(slurm.count == 8);
    const Shard k8s = parse_shard("auto", {{"JOB_COMPLETION_INDEX", "0"}, {"TRNSIM_SHARD_COUNT", "4"}});
    CHECK(k8s.index == 1);
    CHECK(k8s.count == 4);
    CHECK(parse_shard("auto/6", {{"JOB_COMPLETION_INDEX", "5"}}).index == 6);
    for (const char* bad : {"0/3", "4/3", "x/3", "3", "1/0", "", "auto"}) {
        INFO(bad);
        CHECK_THROWS_AS(parse_shard(bad, {}), trnsim::UserError);
    }
    CHECK_THROWS_WITH(parse_shard("auto", {{"JOB_COMPLETION_INDEX", "2"}}), Catch::Contains("TRNSIM_SHARD_COUNT"));
    CHECK_THROWS_WITH(parse_shard("auto/2", {{"JOB_COMPLETION_INDEX", "2"}}), Catch::Contains("not below the count"));
}

TEST_CASE("Tolerances are percentages, and metric directions follow the documented rule", "[sweep][compare]") {
    CHECK(parse_tolerance("2%", "--tolerance") == Approx(0.02));
    CHECK(parse_tolerance("0.5%", "--tolerance") == Approx(0.005));
    for (const char* bad : {"2", "-1%", "%", "abc%", "2%%"}) {
        INFO(bad);
        CHECK_THROWS_AS(parse_tolerance(bad, "--tolerance"), trnsim::UserError);
    }
    for (const char* higher : {"tokens_per_s", "sequences_per_s", "mfu", "hfu", "bandwidth_gbps", "busbw_gbps",
                               "achieved_tflops", "row_hit_rate", "utilization.tensor"})
        CHECK(higher_is_better(higher));
    for (const char* lower : {"step_time_s", "energy.per_token_j", "latency_ns.p99", "cycles", "memory.per_chip_bytes"})
        CHECK(!higher_is_better(lower));
    const MetricSpec m = parse_metric("step_time_s:5%", 0.02);
    CHECK(m.path == "step_time_s");
    CHECK(m.tolerance == Approx(0.05));
    CHECK(!m.higher_is_better);
    CHECK(parse_metric("events:higher", 0.02).higher_is_better);
    CHECK(parse_metric("events:higher", 0.02).tolerance == Approx(0.02));
}

TEST_CASE("Dotted metric paths reach nested keys and config keys that hold dots", "[sweep][compare]") {
    const ordered_json j = ordered_json::parse(
        R"({"energy": {"per_token_j": 2.5}, "config": {"chip.memory.bandwidth": {"value": "2.9TB/s"}}})");
    REQUIRE(find_path(j, "energy.per_token_j") != nullptr);
    CHECK(find_path(j, "energy.per_token_j")->get<double>() == 2.5);
    REQUIRE(find_path(j, "config.chip.memory.bandwidth.value") != nullptr);
    CHECK(find_path(j, "config.chip.memory.bandwidth.value")->get<std::string>() == "2.9TB/s");
    CHECK(find_path(j, "energy.per_step_j") == nullptr);
}

TEST_CASE("Comparing results: equal is no regression, worse beyond tolerance is, better never is", "[sweep][compare]") {
    auto set = [](double time, double bw) {
        ResultSet s;
        s.path = "x.json";
        s.schema = "trnsim.collective/1";
        ResultEntry e;
        e.label = "result";
        e.result = ordered_json{{"schema", "trnsim.collective/1"}, {"time_s", time}, {"algbw_gbps", bw}};
        s.entries.push_back(e);
        return s;
    };
    CHECK(compare_results(set(1.0, 100), set(1.0, 100), {}, 0.0).regressions() == 0);
    CHECK(compare_results(set(1.0, 100), set(1.019, 98.1), {}, 0.02).regressions() == 0);
    const CompareReport worse = compare_results(set(1.0, 100), set(1.03, 100), {}, 0.02);
    CHECK(worse.regressions() == 1);
    CHECK(compare_results(set(1.0, 100), set(1.0, 97), {}, 0.02).regressions() == 1);
    CHECK(compare_results(set(1.0, 100), set(0.5, 200), {}, 0.0).regressions() == 0);
    // A per-metric tolerance overrides the global one.
    CHECK(compare_results(set(1.0, 100), set(1.03, 100), {parse_metric("time_s:5%", 0.0)}, 0.0).regressions() == 0);
    CHECK_THROWS_WITH(compare_results(set(1, 1), set(1, 1), {parse_metric("energy_j", 0)}, 0),
                      Catch::Contains("--metric energy_j"));
    ResultSet other = set(1, 1);
    other.schema = "trnsim.mem/1";
    CHECK_THROWS_WITH(compare_results(set(1, 1), other, {}, 0), Catch::Contains("same command"));
}

TEST_CASE("Comparing with drift: a change beyond tolerance either way fails, and so does an unmatched point",
          "[sweep][compare]") {
    auto set = [](std::vector<std::pair<std::string, double>> points) {
        ResultSet s;
        s.path = "x.jsonl";
        s.sweep = true;
        s.schema = "trnsim.collective/1";
        s.axis_keys = {"bytes"};
        for (const auto& [bytes, time] : points) {
            ResultEntry e;
            e.key = nlohmann::json{{"bytes", bytes}}.dump();
            e.label = "bytes=" + bytes;
            e.result = ordered_json{{"schema", "trnsim.collective/1"}, {"time_s", time}, {"busbw_gbps", 1 / time}};
            s.entries.push_back(e);
        }
        return s;
    };
    const ResultSet base = set({{"1MiB", 1.0}, {"2MiB", 2.0}});
    const CompareReport same = compare_results(base, set({{"1MiB", 1.0}, {"2MiB", 2.0}}), {}, 0.0, true);
    CHECK(same.failures() == 0);
    CHECK(to_table(same).find("0 worse and 0 better beyond tolerance, 0 points in one file only") != std::string::npos);
    // Faster: better, so no regression without drift; with drift both metrics drifted.
    const ResultSet faster = set({{"1MiB", 0.999}, {"2MiB", 2.0}});
    CHECK(compare_results(base, faster, {}, 0.0).failures() == 0);
    const CompareReport drifted = compare_results(base, faster, {}, 0.0, true);
    CHECK(drifted.failures() == 2);
    CHECK(drifted.rows[0].drifted);
    CHECK(to_table(drifted).find("DRIFT") != std::string::npos);
    CHECK(to_junit(drifted).find("type=\"drift\"") != std::string::npos);
    // Within the tolerance either way is fine; slower beyond it is a regression, not a drift.
    CHECK(compare_results(base, faster, {}, 0.002, true).failures() == 0);
    const CompareReport slower = compare_results(base, set({{"1MiB", 1.01}, {"2MiB", 2.0}}), {}, 0.002, true);
    CHECK(slower.failures() == 2);
    CHECK(slower.rows[0].regressed);
    CHECK_FALSE(slower.rows[0].drifted);
    // A point in one file only: listed without drift, a failure (a JUnit testcase) with it.
    const ResultSet fewer = set({{"1MiB", 1.0}});
    CHECK(compare_results(base, fewer, {}, 0.0).failures() == 0);
    const CompareReport missing = compare_results(base, fewer, {}, 0.0, true);
    CHECK(missing.failures() == 1);
    CHECK(missing.regressions() == 0);
    CHECK(to_junit(missing).find("type=\"missing\"") != std::string::npos);
    CHECK(compare_results(fewer, base, {}, 0.0, true).failures() == 1);
}
