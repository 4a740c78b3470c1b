// The regression gate (benchmarks/regression/, tools/regress.sh): the committed baselines are the results of
// exactly the committed cases, every point ok with every gate metric; and `trnsim compare --drift`, as the
// gate calls it, fails on a metric moved either way and on a missing point, with a JUnit failure. No
// simulation runs here: the gate itself (tools/regress.sh, ~1/2 minute) runs in CI (.ci/run).
#include <catch2/catch.hpp>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "metrics.h"
#include "support/trnsim_process.h"
#include "support/xml.h"
#include "sweep_records.h"
#include "sweep_spec.h"

using trnsim::testing::ProcessResult;
using trnsim::testing::run_trnsim_in;
using trnsim::testing::ScratchDir;
using trnsim::testing::well_formed_xml;
namespace cli = trnsim::cli;
namespace fs = std::filesystem;

namespace {

fs::path regression_dir() {
    return fs::path(TRNSIM_SOURCE_DIR) / "benchmarks" / "regression";
}

std::string read_file(const fs::path& p) {
    std::ifstream in(p, std::ios::binary);
    std::stringstream s;
    s << in.rdbuf();
    return s.str();
}

// The stems of the files in `dir` that end in `ext`, sorted.
std::vector<std::string> stems(const fs::path& dir, const std::string& ext) {
    std::vector<std::string> out;
    for (const auto& e : fs::directory_iterator(dir))
        if (e.path().extension() == ext) out.push_back(e.path().stem().string());
    std::sort(out.begin(), out.end());
    return out;
}

// benchmarks/regression/metrics.txt: command -> the metric paths the gate compares, in file order.
std::map<std::string, std::vector<std::string>> gate_metrics() {
    std::map<std::string, std::vector<std::string>> out;
    std::istringstream in(read_file(regression_dir() / "metrics.txt"));
    for (std::string line; std::getline(in, line);) {
        if (line.empty() || line[0] == '#') continue;
        std::istringstream words(line);
        std::string command, metric, extra;
        words >> command >> metric;
        if (metric.empty() || (words >> extra)) FAIL("metrics.txt: expected COMMAND PATH, got: " << line);
        out[command].push_back(metric);
    }
    return out;
}

// `trnsim compare` arguments as tools/regress.sh gives them for `command`.
std::vector<std::string> gate_compare(const std::string& base, const std::string& now, const std::string& command) {
    std::vector<std::string> args = {"compare", base, now, "--drift", "--tolerance", "0%", "--junit", "gate.xml"};
    const auto metrics = gate_metrics();
    for (const auto& m : metrics.at(command)) args.insert(args.end(), {"--metric", m});
    return args;
}

std::string show(const ProcessResult& r) {
    std::ostringstream s;
    s << "exit code " << r.exit_code << "\n--- stdout ---\n" << r.out << "--- stderr ---\n" << r.err;
    return s.str();
}

}  // namespace

TEST_CASE("The committed regression baselines are the cases' results: every point, ok, with every gate metric",
          "[regression]") {
    const fs::path dir = regression_dir();
    const auto metrics = gate_metrics();
    for (const auto& [command, paths] : metrics) {
        INFO("metrics.txt command " << command);
        const auto& commands = cli::sweep_commands();
        CHECK(std::find(commands.begin(), commands.end(), command) != commands.end());
        CHECK(std::set<std::string>(paths.begin(), paths.end()).size() == paths.size());
    }
    const std::vector<std::string> cases = stems(dir / "cases", ".yaml");
    REQUIRE(!cases.empty());
    // Every baseline belongs to a case, and the commands the gate promises are all there.
    CHECK(stems(dir / "baseline", ".jsonl") == cases);
    CHECK(stems(dir / "baseline", ".csv") == cases);
    std::set<std::string> commands_covered;
    for (const auto& name : cases) {
        INFO("case " << name);
        const cli::SweepSpec spec = cli::parse_sweep_spec((dir / "cases" / (name + ".yaml")).string());
        commands_covered.insert(spec.command);
        REQUIRE(metrics.count(spec.command) == 1);
        const std::vector<cli::SweepPoint> points = cli::expand(spec);
        const cli::RecordFile baseline = cli::read_records((dir / "baseline" / (name + ".jsonl")).string());
        CHECK_FALSE(baseline.truncated_tail);
        // Same points with the same command lines: a case edited without refreshing its baseline fails here.
        REQUIRE(baseline.records.size() == points.size());
        for (std::size_t i = 0; i < points.size(); ++i) {
            const cli::ordered_json& r = baseline.records[i];
            INFO("point " << i);
            CHECK(r.at("point").get<std::size_t>() == i);
            CHECK(r.at("args").get<std::vector<std::string>>() == points[i].args);
            REQUIRE(r.at("status") == "ok");
            CHECK(r.at("result").at("schema") == cli::schema_of_command(spec.command));
            CHECK_FALSE(r.at("result").contains("sim"));  // host-dependent, never in a baseline
            for (const auto& m : metrics.at(spec.command)) {
                INFO("metric " << m);
                const cli::ordered_json* v = cli::find_path(r.at("result"), m);
                REQUIRE(v != nullptr);
                CHECK(v->is_number());
            }
        }
    }
    CHECK(commands_covered == std::set<std::string>{"kernel", "mem", "collective", "run"});
    // Refreshes are explained: CHANGES.md has a dated line per refresh.
    const std::string changes = read_file(dir / "CHANGES.md");
    CHECK(changes.find("\n- 20") != std::string::npos);
}

TEST_CASE("The gate's compare fails on a baseline metric moved either way or a missing point, with JUnit failures",
          "[regression][cli]") {
    ScratchDir dir;
    const fs::path base = regression_dir() / "baseline" / "kernel-gemm.jsonl";
    const cli::RecordFile records = cli::read_records(base.string());
    REQUIRE(records.records.size() >= 2);
    // A copy of the baseline with `edit` applied to point 0's result.
    auto variant = [&](const std::string& name, auto edit, bool drop_last = false) {
        std::string text;
        for (std::size_t i = 0; i < records.records.size(); ++i) {
            if (drop_last && i + 1 == records.records.size()) break;
            cli::ordered_json r = records.records[i];
            if (i == 0) edit(r["result"]);
            text += r.dump() + "\n";
        }
        return dir.write(name, text);
    };
    auto xml_of = [&]() {
        const std::string xml = dir.read("gate.xml");
        std::string why;
        INFO(xml);
        CHECK(well_formed_xml(xml, why));
        INFO(why);
        return xml;
    };

    const ProcessResult same =
        run_trnsim_in(gate_compare(base.string(), variant("same.jsonl", [](auto&) {}), "kernel"), dir.path());
    INFO(show(same));
    CHECK(same.exit_code == 0);
    CHECK(xml_of().find("failures=\"0\"") != std::string::npos);

    // One cycle more in a 4096^3 GEMM (2.3e-7 relative) is a regression at tolerance 0.
    const std::string slower =
        variant("slower.jsonl", [](auto& r) { r["cycles"] = r["cycles"].template get<long>() + 1; });
    const ProcessResult worse = run_trnsim_in(gate_compare(base.string(), slower, "kernel"), dir.path());
    INFO(show(worse));
    CHECK(worse.exit_code == 1);
    CHECK(worse.out.find("REGRESSION") != std::string::npos);
    std::string xml = xml_of();
    CHECK(xml.find("failures=\"1\"") != std::string::npos);
    CHECK(xml.find("name=\"cycles\">\n      <failure") != std::string::npos);
    CHECK(xml.find("type=\"regression\"") != std::string::npos);

    // Faster is "better" for compare, but for the gate any change is drift.
    const std::string faster = variant(
        "faster.jsonl", [](auto& r) { r["achieved_tflops"] = r["achieved_tflops"].template get<double>() * 1.0001; });
    const ProcessResult better = run_trnsim_in(gate_compare(base.string(), faster, "kernel"), dir.path());
    INFO(show(better));
    CHECK(better.exit_code == 1);
    CHECK(better.out.find("DRIFT") != std::string::npos);
    xml = xml_of();
    CHECK(xml.find("name=\"achieved_tflops\">\n      <failure") != std::string::npos);
    CHECK(xml.find("type=\"drift\"") != std::string::npos);
    CHECK(run_trnsim_in({"compare", base.string(), faster}, dir.path()).exit_code == 0);  // without --drift: better

    // A case's point that no longer runs (or a new one without a baseline) fails too.
    const std::string fewer = variant(
        "fewer.jsonl", [](auto&) {}, true);
    const ProcessResult missing = run_trnsim_in(gate_compare(base.string(), fewer, "kernel"), dir.path());
    INFO(show(missing));
    CHECK(missing.exit_code == 1);
    CHECK(missing.out.find("MISSING") != std::string::npos);
    CHECK(xml_of().find("type=\"missing\"") != std::string::npos);
}
