// `trnsim sweep`, `merge` and `compare` through the real binary ($TRNSIM_BIN, set by CTest): deterministic
// outputs across -j and shards, kill and resume, failed points, and every user-error path (exit 2, one line
// "trnsim: error: ...", nothing written). Points are small `trnsim mem` runs, so that the tests stay fast.
#include <catch2/catch.hpp>

#include <nlohmann/json.hpp>

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <thread>

#include "support/trnsim_process.h"
#include "support/xml.h"

using trnsim::testing::ProcessResult;
using trnsim::testing::run_trnsim_in;
using trnsim::testing::ScratchDir;
using trnsim::testing::well_formed_xml;

namespace {

// 8 points of 2000 random requests each (~10 ms a point).
const char* const k_small_sweep = R"(command: mem
base: {memory: hbm3-6400, requests: 2000, pattern: random}
grid:
  request-bytes: [32, 64]
  chip.memory.hbm.ck: [1.6GHz, 1.2GHz]
zip:
  outstanding: [1, 64]
  seed: [1, 2]
)";

std::string show(const ProcessResult& r) {
    std::ostringstream s;
    s << "exit code " << r.exit_code << "\n--- stdout ---\n" << r.out << "--- stderr ---\n" << r.err;
    return s.str();
}

std::vector<nlohmann::json> lines_of(const std::string& text) {
    std::vector<nlohmann::json> out;
    std::istringstream in(text);
    for (std::string line; std::getline(in, line);) out.push_back(nlohmann::json::parse(line));
    return out;
}

std::size_t count_lines(const std::string& text) {
    return static_cast<std::size_t>(std::count(text.begin(), text.end(), '\n'));
}

// The user-error contract: exit 2, nothing on stdout, one line on stderr naming every needle.
void check_user_error(const ProcessResult& r, std::initializer_list<std::string> needles) {
    INFO(show(r));
    CHECK(r.exit_code == 2);
    CHECK(r.out.empty());
    CHECK(r.err.rfind("trnsim: error: ", 0) == 0);
    CHECK(count_lines(r.err) == 1);
    for (const auto& n : needles) {
        INFO("expected in the message: " << n);
        CHECK(r.err.find(n) != std::string::npos);
    }
}

// Runs a failing command in a directory holding only `files`, and checks that nothing else appeared.
void expect_error(const std::vector<std::string>& args, const std::map<std::string, std::string>& files,
                  std::initializer_list<std::string> needles, const std::map<std::string, std::string>& env = {}) {
    ScratchDir dir;
    for (const auto& [name, text] : files) dir.write(name, text);
    const ProcessResult r = run_trnsim_in(args, dir.path(), env);
    check_user_error(r, needles);
    std::vector<std::string> expected;
    for (const auto& [name, text] : files) expected.push_back(name);
    CHECK(dir.entries() == expected);
    for (const auto& [name, text] : files) CHECK(dir.read(name) == text);
}

}  // namespace

TEST_CASE("sweep records every point once, in point order, the same bytes for -j 1 and -j 2", "[cli][sweep]") {
    ScratchDir dir;
    dir.write("s.yaml", k_small_sweep);
    const ProcessResult r = run_trnsim_in({"sweep", "s.yaml", "-j", "2"}, dir.path());
    INFO(show(r));
    REQUIRE(r.exit_code == 0);
    CHECK(r.out.find("8 points, 8 ok, 0 failed") != std::string::npos);
    CHECK(r.err.find("8/8 points") != std::string::npos);  // progress, plain lines when not a terminal
    const auto records = lines_of(dir.read("s.jsonl"));
    REQUIRE(records.size() == 8);
    for (std::size_t i = 0; i < records.size(); ++i) {
        const auto& rec = records[i];
        CHECK(rec["point"] == i);
        CHECK(rec["points"] == 8);
        CHECK(rec["status"] == "ok");
        CHECK(rec["result"]["schema"] == "trnsim.mem/1");
        CHECK(!rec["result"].contains("sim"));  // host costs live in s.sim.jsonl
    }
    CHECK(records[5]["axes"] ==
          nlohmann::json::parse(
              R"({"request-bytes": "64", "chip.memory.hbm.ck": "1.6GHz", "outstanding": "64", "seed": "2"})"));
    CHECK(records[5]["result"]["config"]["chip.memory.hbm.ck"]["value"] == "1.6GHz");
    CHECK(records[5]["result"]["traffic"]["request_bytes"] == 64);
    const std::string csv = dir.read("s.csv");
    CHECK(count_lines(csv) == 9);
    CHECK(csv.rfind("point,request-bytes,chip.memory.hbm.ck,outstanding,seed,status,bandwidth_gbps,", 0) == 0);
    CHECK(count_lines(dir.read("s.sim.jsonl")) == 8);

    const ProcessResult one = run_trnsim_in({"sweep", "s.yaml", "-j", "1", "-q", "-o", "one.jsonl"}, dir.path());
    INFO(show(one));
    REQUIRE(one.exit_code == 0);
    CHECK(one.err.empty());
    CHECK(dir.read("one.jsonl") == dir.read("s.jsonl"));
    CHECK(dir.read("one.csv") == dir.read("s.csv"));
}

TEST_CASE("Shards 1/3..3/3 merged equal the unsharded sweep byte for byte", "[cli][sweep]") {
    ScratchDir dir;
    dir.write("s.yaml", k_small_sweep);
    REQUIRE(run_trnsim_in({"sweep", "s.yaml", "-q", "-o", "all.jsonl"}, dir.path()).exit_code == 0);
    std::set<std::size_t> seen;
    std::vector<std::string> merge = {"merge"};
    for (int k = 1; k <= 3; ++k) {
        const std::string out = "shard" + std::to_string(k) + ".jsonl";
        ProcessResult r;
        if (k == 2) {  // the index from a Slurm job array: task 2 of 3 counted from 1
            r = run_trnsim_in(
                {"sweep", "s.yaml", "-q", "--shard", "auto", "-o", out}, dir.path(),
                {{"SLURM_ARRAY_TASK_ID", "2"}, {"SLURM_ARRAY_TASK_MIN", "1"}, {"SLURM_ARRAY_TASK_COUNT", "3"}});
        } else {
            r = run_trnsim_in({"sweep", "s.yaml", "-q", "--shard", std::to_string(k) + "/3", "-o", out}, dir.path());
        }
        INFO(show(r));
        REQUIRE(r.exit_code == 0);
        for (const auto& rec : lines_of(dir.read(out))) {
            const std::size_t p = rec["point"].get<std::size_t>();
            CHECK(static_cast<int>(p % 3) == k - 1);
            CHECK(seen.insert(p).second);
        }
        merge.push_back(out);
    }
    CHECK(seen.size() == 8);
    merge.insert(merge.end(), {"-o", "merged.jsonl"});
    const ProcessResult m = run_trnsim_in(merge, dir.path());
    INFO(show(m));
    REQUIRE(m.exit_code == 0);
    CHECK(dir.read("merged.jsonl") == dir.read("all.jsonl"));
    CHECK(dir.read("merged.csv") == dir.read("all.csv"));
    CHECK(!std::filesystem::exists(dir.file("merged.sim.jsonl")));
    // With the shards' simulator-cost files as well (as a glob shard*.jsonl gives them): joined in point order.
    merge.insert(merge.end() - 2, {"shard3.sim.jsonl", "shard1.sim.jsonl", "shard2.sim.jsonl"});
    merge.back() = "merged2.jsonl";
    const ProcessResult m2 = run_trnsim_in(merge, dir.path());
    INFO(show(m2));
    REQUIRE(m2.exit_code == 0);
    CHECK(dir.read("merged2.jsonl") == dir.read("all.jsonl"));
    std::vector<std::size_t> points;
    for (const auto& rec : lines_of(dir.read("merged2.sim.jsonl"))) points.push_back(rec["point"].get<std::size_t>());
    CHECK(points == std::vector<std::size_t>{0, 1, 2, 3, 4, 5, 6, 7});
}

TEST_CASE("A sweep killed mid-way and resumed has every point exactly once", "[cli][sweep]") {
    ScratchDir dir;
    // Slower points (~40 ms each) so that the kill lands while the sweep runs.
    dir.write("k.yaml", R"(command: mem
base: {memory: hbm3-6400, requests: 40000, pattern: random}
grid:
  seed: [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]
)");
    const pid_t pid = trnsim::testing::start_trnsim_in({"sweep", "k.yaml", "-j", "2", "-o", "k.jsonl"}, dir.path());
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
    while (count_lines(dir.read("k.jsonl")) < 2 && std::chrono::steady_clock::now() < deadline)
        std::this_thread::sleep_for(std::chrono::milliseconds(2));
    ::kill(pid, SIGKILL);
    int status = 0;
    ::waitpid(pid, &status, 0);
    REQUIRE(WIFSIGNALED(status));
    const std::size_t before = count_lines(dir.read("k.jsonl"));
    INFO("points recorded before the kill: " << before);
    REQUIRE(before >= 2);
    REQUIRE(before < 12);
    // A machine loss can also cut the last append short: the resume drops that line.
    { std::ofstream(dir.file("k.jsonl"), std::ios::app) << R"({"point":11,"points":12,"ax)"; }
    const ProcessResult again = run_trnsim_in({"sweep", "k.yaml", "-j", "2", "-o", "k.jsonl"}, dir.path());
    check_user_error(again, {"--output k.jsonl", "exists", "--resume"});
    const ProcessResult r = run_trnsim_in({"sweep", "k.yaml", "-j", "2", "-o", "k.jsonl", "--resume"}, dir.path());
    INFO(show(r));
    REQUIRE(r.exit_code == 0);
    CHECK(r.err.find("incomplete line") != std::string::npos);
    const auto records = lines_of(dir.read("k.jsonl"));
    REQUIRE(records.size() == 12);
    for (std::size_t i = 0; i < 12; ++i) CHECK(records[i]["point"] == i);
    CHECK(count_lines(dir.read("k.csv")) == 13);
    // The same bytes as a sweep that was never interrupted.
    REQUIRE(run_trnsim_in({"sweep", "k.yaml", "-q", "-o", "fresh.jsonl"}, dir.path()).exit_code == 0);
    CHECK(dir.read("fresh.jsonl") == dir.read("k.jsonl"));
    CHECK(dir.read("fresh.csv") == dir.read("k.csv"));
}

TEST_CASE("A failing point is recorded with its error, the others finish, and the exit code is 1", "[cli][sweep]") {
    ScratchDir dir;
    dir.write("f.yaml",
              "command: mem\nbase: {memory: hbm3-6400, requests: 2000}\ngrid: {request-bytes: [32, 48, 64]}\n");
    const ProcessResult r = run_trnsim_in({"sweep", "f.yaml"}, dir.path());
    INFO(show(r));
    CHECK(r.exit_code == 1);
    CHECK(r.err.find("point 1 (request-bytes=48) failed") != std::string::npos);
    const auto records = lines_of(dir.read("f.jsonl"));
    REQUIRE(records.size() == 3);
    CHECK(records[0]["status"] == "ok");
    CHECK(records[1]["status"] == "failed");
    CHECK(records[1]["error"].get<std::string>().find("--request-bytes 48") != std::string::npos);
    CHECK(!records[1].contains("result"));
    CHECK(records[2]["status"] == "ok");
    CHECK(dir.read("f.csv").find("\n1,48,failed,,,,,,\"--request-bytes 48") != std::string::npos);
}

TEST_CASE("Sweep user errors name the file, the key path and what is allowed, and write nothing", "[cli][sweep]") {
    const std::string ok = "command: mem\nbase: {memory: hbm3-6400, requests: 100}\ngrid: {seed: [1, 2]}\n";
    expect_error({"sweep", "s.yaml"}, {{"s.yaml", "command: mem\naxes: {seed: [1]}\n"}},
                 {"sweep file s.yaml", "axes", "unknown key", "command, base, grid, zip"});
    expect_error({"sweep", "s.yaml"}, {{"s.yaml", "command: mem\nzip: {seed: [1, 2], requests: [10]}\n"}},
                 {"sweep file s.yaml", "zip.requests", "same length"});
    expect_error({"sweep", "s.yaml"}, {{"s.yaml", "command: simulate\n"}},
                 {"sweep file s.yaml", "command", "simulate", "run, kernel, mem, collective"});
    expect_error({"sweep", "s.yaml"}, {{"s.yaml", "command: mem\ngrid: {seed: []}\n"}},
                 {"sweep file s.yaml", "grid.seed", "empty list"});
    expect_error({"sweep", "s.yaml"}, {{"s.yaml", "command: mem\ngrid: {requests: [10, many]}\n"}},
                 {"sweep file s.yaml", "grid.requests[1]", "many"});
    expect_error({"sweep", "nope.yaml"}, {}, {"sweep file nope.yaml", "cannot read"});
    expect_error({"sweep", "s.yaml", "--shard", "3/2"}, {{"s.yaml", ok}}, {"--shard 3/2", "1 <= K <= N"});
    expect_error({"sweep", "s.yaml", "--shard", "two"}, {{"s.yaml", ok}}, {"--shard two", "K/N", "auto"});
    expect_error({"sweep", "s.yaml", "--shard", "auto"}, {{"s.yaml", ok}},
                 {"--shard auto", "SLURM_ARRAY_TASK_ID", "JOB_COMPLETION_INDEX"});
    expect_error({"sweep", "s.yaml", "--shard", "auto"}, {{"s.yaml", ok}}, {"--shard auto", "TRNSIM_SHARD_COUNT"},
                 {{"JOB_COMPLETION_INDEX", "1"}});
    expect_error({"sweep", "s.yaml", "-j", "-1"}, {{"s.yaml", ok}}, {"--jobs", "Value -1", "1 to 4096"});
    expect_error({"sweep", "s.yaml", "-j", "0"}, {{"s.yaml", ok}}, {"--jobs", "Value 0", "1 to 4096"});
    expect_error({"sweep", "s.yaml", "--cache", "c"}, {{"s.yaml", ok}}, {"--cache c", "only run sweeps"});
    expect_error({"sweep", "s.yaml", "-o", "out.jsonl"}, {{"s.yaml", ok}, {"out.jsonl", "keep me\n"}},
                 {"--output out.jsonl", "exists", "--resume"});
    // --resume of an output another sweep wrote.
    expect_error({"sweep", "s.yaml", "-o", "out.jsonl", "--resume"},
                 {{"s.yaml", ok},
                  {"out.jsonl",
                   R"({"point":0,"points":2,"axes":{"seed":"1"},"args":["mem","--seed","1"],"status":"ok","result":{}})"
                   "\n"}},
                 {"--resume", "out.jsonl line 1", "not written by this sweep"});
}

TEST_CASE("merge rejects missing, duplicated and incomplete shard outputs", "[cli][sweep]") {
    ScratchDir dir;
    dir.write("s.yaml", k_small_sweep);
    for (const char* k : {"1", "2"}) {
        REQUIRE(run_trnsim_in(
                    {"sweep", "s.yaml", "-q", "--shard", std::string(k) + "/2", "-o", std::string("p") + k + ".jsonl"},
                    dir.path())
                    .exit_code == 0);
    }
    const std::string p1 = dir.read("p1.jsonl"), p2 = dir.read("p2.jsonl");
    expect_error({"merge", "p1.jsonl", "-o", "all.jsonl"}, {{"p1.jsonl", p1}},
                 {"4 of the sweep's 8 points are missing", "points 1, 3, 5, 7", "--partial"});
    expect_error({"merge", "p1.jsonl", "p2.jsonl", "p1.jsonl", "-o", "all.jsonl"}, {{"p1.jsonl", p1}, {"p2.jsonl", p2}},
                 {"point 0 is also in p1.jsonl"});
    expect_error({"merge", "p1.jsonl", "p2.jsonl", "-o", "all.jsonl"},
                 {{"p1.jsonl", p1}, {"p2.jsonl", p2 + R"({"point":)"}}, {"p2.jsonl", "incomplete", "--resume"});
    expect_error({"merge", "p1.jsonl", "p2.jsonl", "-o", "all.jsonl"}, {{"p1.jsonl", p1}, {"p2.jsonl", "{}\n"}},
                 {"p2.jsonl: line 1 is not a sweep record"});
    const ProcessResult partial = run_trnsim_in({"merge", "p1.jsonl", "--partial", "-o", "half.jsonl"}, dir.path());
    INFO(show(partial));
    CHECK(partial.exit_code == 0);
    CHECK(count_lines(dir.read("half.jsonl")) == 4);
}

TEST_CASE("compare exits 0 on equal results, 1 on a regression beyond tolerance, with valid JUnit XML",
          "[cli][sweep][compare]") {
    ScratchDir dir;
    const std::vector<std::string> mem = {"mem", "--memory", "hbm3-6400", "--requests", "2000"};
    auto run_mem = [&](const std::string& out, std::vector<std::string> extra) {
        std::vector<std::string> args = mem;
        args.insert(args.end(), extra.begin(), extra.end());
        args.insert(args.end(), {"--json", out});
        REQUIRE(run_trnsim_in(args, dir.path()).exit_code == 0);
    };
    run_mem("base.json", {});
    run_mem("same.json", {});
    run_mem("slow.json", {"--set", "chip.memory.hbm.ck=1.2GHz"});  // bandwidth -21%, latency +23%

    const ProcessResult equal = run_trnsim_in({"compare", "base.json", "same.json", "--junit", "eq.xml"}, dir.path());
    INFO(show(equal));
    CHECK(equal.exit_code == 0);
    CHECK(equal.out.find("0 regressions") != std::string::npos);
    std::string why;
    CHECK(well_formed_xml(dir.read("eq.xml"), why));
    CHECK(dir.read("eq.xml").find("failures=\"0\"") != std::string::npos);

    const ProcessResult worse =
        run_trnsim_in({"compare", "base.json", "slow.json", "--tolerance", "2%", "--junit", "r.xml"}, dir.path());
    INFO(show(worse));
    CHECK(worse.exit_code == 1);
    CHECK(worse.out.find("REGRESSION") != std::string::npos);
    const std::string xml = dir.read("r.xml");
    INFO(xml);
    CHECK(well_formed_xml(xml, why));
    INFO(why);
    CHECK(xml.find("<testcase classname=\"result\" name=\"bandwidth_gbps\">") != std::string::npos);
    CHECK(xml.find("<failure ") != std::string::npos);
    CHECK(xml.find("<testsuite ") != std::string::npos);
    if (::access("/usr/bin/xmllint", X_OK) == 0)
        CHECK(std::system(("/usr/bin/xmllint --noout " + dir.file("r.xml")).c_str()) == 0);

    // Only the metrics asked for, each with its own tolerance: row hits are unchanged, bandwidth is within 25%.
    const ProcessResult chosen = run_trnsim_in(
        {"compare", "base.json", "slow.json", "--metric", "row_hit_rate", "--metric", "bandwidth_gbps:25%"},
        dir.path());
    INFO(show(chosen));
    CHECK(chosen.exit_code == 0);
    CHECK(chosen.out.find("latency") == std::string::npos);
}

TEST_CASE("compare matches two sweep outputs by their axis values", "[cli][sweep][compare]") {
    ScratchDir dir;
    dir.write("s.yaml", k_small_sweep);
    REQUIRE(run_trnsim_in({"sweep", "s.yaml", "-q", "-o", "a.jsonl"}, dir.path()).exit_code == 0);
    // The same points in another order still match.
    auto lines = lines_of(dir.read("a.jsonl"));
    std::reverse(lines.begin(), lines.end());
    std::string reversed;
    for (const auto& l : lines) reversed += l.dump() + "\n";
    dir.write("b.jsonl", reversed);
    const ProcessResult r = run_trnsim_in({"compare", "a.jsonl", "b.jsonl"}, dir.path());
    INFO(show(r));
    CHECK(r.exit_code == 0);
    CHECK(r.out.find("40 comparisons, 0 regressions") != std::string::npos);
    // One point slower in NEW: a regression of that point.
    lines[0]["result"]["latency_ns"]["mean"] = lines[0]["result"]["latency_ns"]["mean"].get<double>() * 1.5;
    std::string changed;
    for (const auto& l : lines) changed += l.dump() + "\n";
    dir.write("c.jsonl", changed);
    const ProcessResult c = run_trnsim_in({"compare", "a.jsonl", "c.jsonl", "--tolerance", "10%"}, dir.path());
    INFO(show(c));
    CHECK(c.exit_code == 1);
    CHECK(c.out.find("1 regressions") != std::string::npos);
}

TEST_CASE("compare user errors: mismatched files, bad tolerance or metric, nothing written", "[cli][sweep][compare]") {
    const std::string result = R"({"schema": "trnsim.mem/1", "bandwidth_gbps": 1.0})";
    const std::string kernel = R"({"schema": "trnsim.kernel/1", "time_s": 1.0})";
    const std::string sweep =
        R"({"point":0,"points":1,"axes":{"seed":"1"},"args":["mem","--seed","1"],"status":"ok","result":{"bandwidth_gbps":1.0}})"
        "\n";
    const std::string other_axes =
        R"({"point":0,"points":1,"axes":{"stacks":"1"},"args":["mem","--stacks","1"],"status":"ok","result":{"bandwidth_gbps":1.0}})"
        "\n";
    expect_error({"compare", "a.json", "b.jsonl", "--junit", "j.xml"}, {{"a.json", result}, {"b.jsonl", sweep}},
                 {"a.json is a single result", "b.jsonl is a sweep output", "two results, or two sweep outputs"});
    expect_error({"compare", "a.json", "k.json", "--junit", "j.xml"}, {{"a.json", result}, {"k.json", kernel}},
                 {"trnsim.mem/1", "trnsim.kernel/1", "same command"});
    expect_error({"compare", "a.jsonl", "b.jsonl", "--junit", "j.xml"}, {{"a.jsonl", sweep}, {"b.jsonl", other_axes}},
                 {"a.jsonl sweeps the axes (seed)", "b.jsonl sweeps (stacks)"});
    expect_error({"compare", "a.json", "x.txt"}, {{"a.json", result}, {"x.txt", "hello\n"}},
                 {"x.txt", "neither a trnsim result", "nor a sweep output"});
    expect_error({"compare", "a.json", "a.json", "--tolerance", "2", "--junit", "j.xml"}, {{"a.json", result}},
                 {"--tolerance 2", "percentage", "2%"});
    expect_error({"compare", "a.json", "a.json", "--tolerance", "-5%"}, {{"a.json", result}}, {"--tolerance -5%"});
    expect_error({"compare", "a.json", "a.json", "--metric", "latency_ns.p42", "--junit", "j.xml"},
                 {{"a.json", result}}, {"--metric latency_ns.p42", "not in a.json"});
    expect_error({"compare", "a.json"}, {{"a.json", result}}, {"1 files given", "BASE NEW"});
    expect_error({"compare", "a.json", "a.json", "--tolerence", "2%"}, {{"a.json", result}},
                 {"unknown option '--tolerence'"});
    // A misspelt config is named before any of the others runs.
    expect_error({"compare", "--cluster", "trn2.48xlarge", "--cluster", "nosuch"}, {},
                 {"--cluster 'nosuch'", "unknown cluster preset"});
    expect_error({"compare", "--chip", "trn2", "--chip", "trn9", "--m", "128", "--k", "128", "--n", "128"}, {},
                 {"unknown chip preset 'trn9'"});
}

TEST_CASE("compare --cluster runs one workload on several clusters side by side", "[cli][sweep][compare]") {
    ScratchDir dir;
    const ProcessResult r = run_trnsim_in({"compare", "--cluster", "trn2.48xlarge", "--cluster", "trn2-ultraserver",
                                           "--command", "collective", "--bytes", "1MiB", "--op", "all-gather"},
                                          dir.path());
    INFO(show(r));
    REQUIRE(r.exit_code == 0);
    CHECK(r.out.find("trn2.48xlarge") != std::string::npos);
    CHECK(r.out.find("trn2-ultraserver") != std::string::npos);
    CHECK(r.out.find("busbw_gbps") != std::string::npos);
    CHECK(dir.entries().empty());
    check_user_error(
        run_trnsim_in({"compare", "--cluster", "trn2.48xlarge", "--command", "collective", "--bytse", "1MiB"},
                      dir.path()),
        {"compare", "--bytse"});
}
