// CLI tests: run the real trnsim binary (path in $TRNSIM_BIN, set by CTest) and
// check exit codes, messages and the JSON it writes. Every user error must exit
// with code 2, print one line "trnsim: error: ..." on stderr naming the problem
// and what is allowed, and write nothing.

#include <catch2/catch.hpp>

#include <map>

#include <nlohmann/json.hpp>

#include "support/trnsim_process.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <initializer_list>
#include <sstream>
#include <string>
#include <system_error>
#include <vector>

namespace fs = std::filesystem;

namespace {

using RunResult = trnsim::testing::ProcessResult;

// Run trnsim with the given arguments in directory `cwd` (empty: inherit) and capture stdout, stderr and the
// exit code (tests/support/trnsim_process.h).
RunResult run_trnsim(const std::vector<std::string>& args, const std::string& cwd = {}) {
    return trnsim::testing::run_trnsim_in(args, cwd);
}

using TempDir = trnsim::testing::ScratchDir;

std::string show(const RunResult& r) {
    std::ostringstream s;
    s << "exit code " << r.exit_code << "\n--- stdout ---\n" << r.out << "--- stderr ---\n" << r.err;
    return s.str();
}

// The contract for a user error: exit code 2, nothing on stdout, exactly one
// line on stderr starting "trnsim: error:" and containing every `needle`.
void check_user_error(const RunResult& r, std::initializer_list<std::string> needles) {
    INFO(show(r));
    CHECK(r.exit_code == 2);
    CHECK(r.out.empty());
    CHECK(r.err.rfind("trnsim: error: ", 0) == 0);
    CHECK(std::count(r.err.begin(), r.err.end(), '\n') == 1);
    CHECK((!r.err.empty() && r.err.back() == '\n'));
    for (const auto& needle : needles) {
        INFO("expected in the message: " << needle);
        CHECK(r.err.find(needle) != std::string::npos);
    }
}

// Run a failing `trnsim <subcommand> ...` command with `--json out.json` added, in an
// empty directory, check the user-error contract, and check that no file at all
// (neither out.json nor a temporary) appeared.
RunResult expect_error(const std::string& subcommand, std::vector<std::string> args,
                       std::initializer_list<std::string> needles) {
    TempDir dir;
    args.insert(args.begin(), subcommand);
    args.push_back("--json");
    args.push_back(dir.file("out.json"));
    const RunResult r = run_trnsim(args, dir.path());
    check_user_error(r, needles);
    INFO(show(r));
    CHECK(dir.entries().empty());
    return r;
}

RunResult expect_kernel_error(std::vector<std::string> args, std::initializer_list<std::string> needles) {
    return expect_error("kernel", std::move(args), needles);
}

const std::vector<std::string> kSmallGemm = {"kernel", "gemm", "--m", "128", "--k", "128", "--n", "128"};

std::vector<std::string> small_gemm(std::initializer_list<std::string> extra) {
    std::vector<std::string> args(kSmallGemm.begin() + 1, kSmallGemm.end());  // without "kernel"
    args.insert(args.end(), extra.begin(), extra.end());
    return args;
}

nlohmann::json read_json(const std::string& path) {
    std::ifstream f(path);
    REQUIRE(f.good());
    return nlohmann::json::parse(f);
}

}  // namespace

// ---------------------------------------------------------------------------
// Error paths: exit code 2, one line naming the problem and the allowed values.

TEST_CASE("An unknown chip preset is rejected with the list of presets", "[cli]") {
    expect_kernel_error(small_gemm({"--chip", "trn9"}), {"trn9", "trn1", "trn2", "trn3"});
}

TEST_CASE("describe with an unknown chip preset is rejected with the list of presets", "[cli]") {
    check_user_error(run_trnsim({"describe", "trn9"}), {"trn9", "trn1", "trn2", "trn3"});
}

TEST_CASE("An unknown key in --set is named, with a suggestion", "[cli]") {
    expect_kernel_error(small_gemm({"--set", "chip.core.tensor_engine.rowz=64"}),
                        {"chip.core.tensor_engine.rowz", "did you mean", "chip.core.tensor_engine.rows"});
}

TEST_CASE("A value without its unit is rejected with the allowed units", "[cli]") {
    expect_kernel_error(small_gemm({"--set", "chip.memory.bandwidth=2900"}),
                        {"chip.memory.bandwidth", "2900", "no unit", "TB/s", "GiB/s"});
}

TEST_CASE("A value with the wrong kind of unit is rejected with the allowed units", "[cli]") {
    expect_kernel_error(small_gemm({"--set", "chip.memory.bandwidth=2.9GHz"}),
                        {"chip.memory.bandwidth", "GHz", "TB/s", "GiB/s"});
}

TEST_CASE("A --set without '=' is rejected with the expected syntax", "[cli]") {
    expect_kernel_error(small_gemm({"--set", "chip.memory.bandwidth"}), {"chip.memory.bandwidth", "dotted.key=value"});
}

TEST_CASE("An out-of-range value is rejected with the allowed range", "[cli]") {
    expect_kernel_error(small_gemm({"--set", "chip.core.tensor_engine.rows=0"}),
                        {"chip.core.tensor_engine.rows", "out of range", "[1, 4096]"});
}

TEST_CASE("An unknown choice is rejected with the allowed choices", "[cli]") {
    expect_kernel_error(small_gemm({"--set", "chip.core.tensor_engine.dataflow=xs"}),
                        {"chip.core.tensor_engine.dataflow", "xs", "ws", "os", "is"});
}

TEST_CASE("A zero GEMM size is rejected with the allowed range", "[cli]") {
    expect_kernel_error({"gemm", "--m", "0", "--k", "128", "--n", "128"}, {"--m 0", "allowed 1.."});
}

TEST_CASE("An array wider or taller than the SBUF partitions is rejected", "[cli]") {
    expect_kernel_error(small_gemm({"--set", "chip.core.tensor_engine.cols=256"}),
                        {"chip.core.tensor_engine.rows x cols", "chip.core.sbuf.partitions", "allowed"});
}

TEST_CASE("A value with a unit outside its range is rejected with the range in that unit", "[cli]") {
    expect_kernel_error(small_gemm({"--set", "chip.core.tensor_engine.clock=2.4Hz"}),
                        {"chip.core.tensor_engine.clock", "out of range", "from 1MHz to 100GHz"});
}

TEST_CASE("A negative GEMM size is rejected with the allowed range", "[cli]") {
    expect_kernel_error({"gemm", "--m", "-5", "--k", "128", "--n", "128"}, {"--m", "-5", "allowed 1.."});
}

TEST_CASE("An absurd GEMM size is rejected with the allowed range", "[cli]") {
    expect_kernel_error({"gemm", "--m", "100000000000", "--k", "128", "--n", "128"},
                        {"--m", "100000000000", "allowed 1.."});
}

TEST_CASE("Non-positive and absurd row and column counts are rejected", "[cli]") {
    SECTION("zero rows") {
        const RunResult r = expect_kernel_error({"layernorm", "--rows", "0", "--cols", "128"}, {"--rows"});
        CHECK((r.err.find("positive") != std::string::npos || r.err.find("1..") != std::string::npos));
    }
    SECTION("negative columns") {
        expect_kernel_error({"softmax", "--rows", "128", "--cols", "-1"}, {"--cols", "-1"});
    }
    SECTION("absurd rows") {
        expect_kernel_error({"gelu", "--rows", "100000000000", "--cols", "128"}, {"--rows"});
    }
}

TEST_CASE("A non-numeric size is rejected", "[cli]") {
    expect_kernel_error({"gemm", "--m", "12x8", "--k", "128", "--n", "128"}, {"--m", "12x8"});
}

TEST_CASE("A GEMM without all of --m --k --n is rejected", "[cli]") {
    SECTION("no --m") {
        expect_kernel_error({"gemm", "--k", "128", "--n", "128"}, {"--m", "--k", "--n"});
    }
    SECTION("no --k") {
        expect_kernel_error({"gemm", "--m", "128", "--n", "128"}, {"--m", "--k", "--n"});
    }
    SECTION("no --n") {
        expect_kernel_error({"gemm", "--m", "128", "--k", "128"}, {"--m", "--k", "--n"});
    }
    SECTION("nothing") {
        expect_kernel_error({"gemm"}, {"--m", "--k", "--n"});
    }
}

TEST_CASE("A row-wise kernel without --rows and --cols is rejected", "[cli]") {
    expect_kernel_error({"layernorm", "--rows", "128"}, {"--rows", "--cols"});
    expect_kernel_error({"softmax", "--cols", "128"}, {"--rows", "--cols"});
}

TEST_CASE("A GEMM given --rows or --cols is rejected", "[cli]") {
    expect_kernel_error(small_gemm({"--rows", "4"}), {"gemm", "--m --k --n", "--rows"});
    expect_kernel_error(small_gemm({"--cols", "4"}), {"gemm", "--m --k --n", "--cols"});
}

TEST_CASE("The --dropout flag is a flash kernel's, and cannot be checked against the FP64 reference", "[cli]") {
    expect_kernel_error(small_gemm({"--dropout"}), {"gemm", "--dropout", "flash"});
    expect_kernel_error({"flash_fwd", "--m", "128", "--k", "64", "--n", "128", "--dropout", "--functional"},
                        {"--functional", "--dropout", "reference"});
}

TEST_CASE("A row-wise kernel given --m/--k/--n is rejected", "[cli]") {
    expect_kernel_error({"layernorm", "--rows", "128", "--cols", "128", "--m", "4"}, {"layernorm", "--rows", "--m"});
}

TEST_CASE("An unknown kernel op is rejected with the list of ops", "[cli]") {
    expect_kernel_error({"conv", "--m", "128", "--k", "128", "--n", "128"},
                        {"conv", "gemm", "layernorm", "rmsnorm", "softmax", "gelu", "silu", "transpose"});
}

TEST_CASE("A missing kernel op is rejected", "[cli]") {
    expect_kernel_error({}, {"op"});
}

TEST_CASE("An unknown dtype is rejected with the list of dtypes", "[cli]") {
    expect_kernel_error(small_gemm({"--dtype", "int4"}), {"int4", "fp32", "bf16", "fp16", "fp8", "fp8_e5m2"});
}

TEST_CASE("A GEMM whose smallest tile cannot fit SBUF is rejected", "[cli]") {
    expect_kernel_error({"gemm", "--m", "128", "--k", "4000000", "--n", "128"},
                        {"SBUF", "chip.core.sbuf.partition_size", "224KiB", "allowed"});
}

TEST_CASE("A layernorm whose row tile cannot fit SBUF is rejected", "[cli]") {
    expect_kernel_error({"layernorm", "--rows", "128", "--cols", "10000000"},
                        {"layernorm", "SBUF", "chip.core.sbuf.partition_size", "allowed"});
}

TEST_CASE("A config file that does not exist is rejected with its path", "[cli]") {
    TempDir dir;
    const std::string missing = dir.file("no-such-file.yaml");
    expect_kernel_error(small_gemm({"--config", missing}), {missing});
}

TEST_CASE("An unknown key in a YAML file is named with the file and a suggestion", "[cli]") {
    TempDir dir;
    const std::string path = dir.write("overlay.yaml", "chip:\n  core:\n    tensor_engine:\n      rowz: 64\n");
    expect_kernel_error(small_gemm({"--config", path}),
                        {path, "chip.core.tensor_engine.rowz", "chip.core.tensor_engine.rows"});
}

TEST_CASE("An unknown top-level key in a YAML file is named with the file", "[cli]") {
    TempDir dir;
    const std::string path = dir.write("overlay.yaml", "chip:\n  memory:\n    bandwidth: 1.5TB/s\nfoo: 1\n");
    expect_kernel_error(small_gemm({"--config", path}), {path, "'foo'"});
}

TEST_CASE("A value without its unit in a YAML file is named with the file and the key", "[cli]") {
    TempDir dir;
    const std::string path = dir.write("overlay.yaml", "chip:\n  memory:\n    bandwidth: 1500\n");
    expect_kernel_error(small_gemm({"--config", path}), {path, "chip.memory.bandwidth", "no unit", "TB/s"});
}

TEST_CASE("A YAML syntax error is reported with the file and the position", "[cli]") {
    TempDir dir;
    const std::string path = dir.write("broken.yaml", "chip:\n  core:\n    tensor_engine:\n      rows: [64\n");
    expect_kernel_error(small_gemm({"--config", path}), {path, "YAML", "line"});
}

TEST_CASE("A key given twice in a YAML file is rejected with the file and the key path", "[cli]") {
    TempDir dir;
    const std::string overlay =
        dir.write("overlay.yaml", "chip:\n  core:\n    tensor_engine:\n      rows: 64\n      rows: 128\n");
    expect_kernel_error(small_gemm({"--config", overlay}), {overlay, "chip.core.tensor_engine.rows", "given twice"});
    const std::string model = dir.write("m.yaml", "name: m\nlayers: 32\nhidden: 4096\nlayers: 16\n");
    expect_error("run", {"--model", model}, {model, "layers", "given twice"});
}

TEST_CASE("A directory given as a config or model file is rejected", "[cli]") {
    TempDir dir;
    expect_kernel_error(small_gemm({"--config", dir.path()}), {dir.path(), "a directory", "a YAML file"});
    expect_error("run", {"--model", dir.path()}, {"model file", dir.path(), "a directory"});
}

TEST_CASE("An overlay with a base, and an unknown chip named by a cluster file, are rejected with the file", "[cli]") {
    TempDir dir;
    const std::string based = dir.write("based.yaml", "base: trn1\n");
    expect_kernel_error(small_gemm({"--config", based}), {based, "base", "--cluster or --chip file"});
    const std::string chip = dir.write("chip.yaml", "cluster:\n  chip: trn9\n");
    expect_error("run", {"--config", chip}, {"cluster.chip = 'trn9'", chip, "trn1, trn2, trn3"});
}

TEST_CASE("Writing --json into a directory that does not exist fails and writes nothing", "[cli]") {
    TempDir dir;
    const std::string target = dir.file("missing-dir/result.json");
    const RunResult r =
        run_trnsim({"kernel", "gemm", "--m", "128", "--k", "128", "--n", "128", "--json", target}, dir.path());
    INFO(show(r));
    CHECK(r.exit_code == 2);
    CHECK(r.err.rfind("trnsim: error: ", 0) == 0);
    CHECK(std::count(r.err.begin(), r.err.end(), '\n') == 1);
    CHECK(r.err.find(target) != std::string::npos);
    // Nothing anywhere: not the directory, not the file, no temporary next to it.
    CHECK(!fs::exists(dir.file("missing-dir")));
    CHECK(dir.entries().empty());
}

TEST_CASE("Writing --json onto an existing directory fails and leaves it alone", "[cli]") {
    TempDir dir;
    const std::string target = dir.file("subdir");
    fs::create_directory(target);
    const RunResult r =
        run_trnsim({"kernel", "gemm", "--m", "128", "--k", "128", "--n", "128", "--json", target}, dir.path());
    INFO(show(r));
    CHECK(r.exit_code == 2);
    CHECK(r.err.rfind("trnsim: error: ", 0) == 0);
    CHECK(r.err.find(target) != std::string::npos);
    CHECK(fs::is_directory(target));
    CHECK(fs::is_empty(target));
    CHECK(dir.entries() == std::vector<std::string>{"subdir"});
}

TEST_CASE("A --json through a symbolic link replaces the file it names and keeps the link", "[cli]") {
    TempDir dir;
    fs::create_directory(dir.file("out"));
    fs::create_symlink("out/result.json", dir.file("link.json"));
    const RunResult r =
        run_trnsim({"kernel", "gemm", "--m", "128", "--k", "128", "--n", "128", "--json", "link.json"}, dir.path());
    INFO(show(r));
    REQUIRE(r.exit_code == 0);
    CHECK(fs::is_symlink(fs::symlink_status(dir.file("link.json"))));
    CHECK(nlohmann::json::parse(dir.read("out/result.json"))["schema"] == "trnsim.kernel/1");
    CHECK(std::distance(fs::directory_iterator(dir.file("out")), fs::directory_iterator()) == 1);  // no temporary
}

// The kernel's JSON (~18 KB) fits the pipe's buffer (64 KiB), so the writer finishes before the test reads.
TEST_CASE("A --json onto a FIFO writes into it and leaves it a FIFO", "[cli]") {
    TempDir dir;
    const std::string fifo = dir.file("pipe");
    REQUIRE(::mkfifo(fifo.c_str(), 0600) == 0);
    const int reader = ::open(fifo.c_str(), O_RDONLY | O_NONBLOCK);  // so that the writer's open succeeds
    REQUIRE(reader >= 0);
    const RunResult r =
        run_trnsim({"kernel", "gemm", "--m", "128", "--k", "128", "--n", "128", "--json", fifo}, dir.path());
    std::string text;
    char buf[4096];
    for (ssize_t n; (n = ::read(reader, buf, sizeof buf)) > 0;) text.append(buf, static_cast<std::size_t>(n));
    ::close(reader);
    INFO(show(r));
    CHECK(r.exit_code == 0);
    CHECK(fs::is_fifo(fifo));
    CHECK(nlohmann::json::parse(text)["schema"] == "trnsim.kernel/1");
    CHECK(dir.entries() == std::vector<std::string>{"pipe"});
}

TEST_CASE("A --json to /dev/stdout follows the table on the process's own output", "[cli]") {
    TempDir dir;
    const RunResult r =
        run_trnsim({"kernel", "gemm", "--m", "128", "--k", "128", "--n", "128", "--json", "/dev/stdout"}, dir.path());
    INFO(show(r));
    REQUIRE(r.exit_code == 0);
    const auto json = r.out.find("{\n");
    REQUIRE(json != std::string::npos);
    CHECK(r.out.rfind("trnsim kernel gemm", 0) == 0);  // the table first
    CHECK(nlohmann::json::parse(r.out.substr(json))["schema"] == "trnsim.kernel/1");
    CHECK(dir.entries().empty());
}

TEST_CASE("A --json through a loop of symbolic links is rejected and the links are left alone", "[cli]") {
    TempDir dir;
    fs::create_symlink("b.json", dir.file("a.json"));
    fs::create_symlink("a.json", dir.file("b.json"));
    check_user_error(
        run_trnsim({"kernel", "gemm", "--m", "128", "--k", "128", "--n", "128", "--json", "a.json"}, dir.path()),
        {"a.json", "too many levels of symbolic links"});
    CHECK(fs::is_symlink(fs::symlink_status(dir.file("a.json"))));
    CHECK(fs::is_symlink(fs::symlink_status(dir.file("b.json"))));
}

TEST_CASE("Both --json and --trace naming one file are rejected before simulating", "[cli]") {
    TempDir dir;
    fs::create_symlink("a.json", dir.file("b.json"));
    for (const auto& [json, trace] :
         std::vector<std::pair<std::string, std::string>>{{"a.json", "./a.json"}, {"b.json", "a.json"}}) {
        check_user_error(
            run_trnsim({"kernel", "gemm", "--m", "128", "--k", "128", "--n", "128", "--json", json, "--trace", trace},
                       dir.path()),
            {"--json " + json, "--trace " + trace, "the same file"});
    }
    CHECK(dir.entries() == std::vector<std::string>{"b.json"});
}

TEST_CASE("An unknown subcommand is rejected", "[cli]") {
    check_user_error(run_trnsim({"bogus"}), {"bogus"});
}

// ---------------------------------------------------------------------------
// What works.

TEST_CASE("presets lists trn1, trn2 and trn3", "[cli]") {
    const RunResult r = run_trnsim({"presets"});
    INFO(show(r));
    REQUIRE(r.exit_code == 0);
    CHECK(r.err.empty());
    for (const char* chip : {"trn1", "trn2", "trn3"}) CHECK(r.out.find(chip) != std::string::npos);
}

TEST_CASE("describe trn2 shows the HBM bandwidth with its unit and source tag", "[cli]") {
    const RunResult r = run_trnsim({"describe", "trn2"});
    INFO(show(r));
    REQUIRE(r.exit_code == 0);
    std::istringstream lines(r.out);
    std::string line;
    bool found = false;
    while (std::getline(lines, line)) {
        if (line.find("chip.memory.bandwidth ") == std::string::npos) continue;
        found = true;
        INFO(line);
        CHECK(line.find("2.9TB/s") != std::string::npos);
        CHECK(line.find("[TRN2]") != std::string::npos);
    }
    CHECK(found);
}

TEST_CASE("describe shows a --set override with its value and source --set", "[cli]") {
    const RunResult r = run_trnsim({"describe", "trn2", "--set", "chip.memory.bandwidth=1.5TB/s"});
    INFO(show(r));
    REQUIRE(r.exit_code == 0);
    std::istringstream lines(r.out);
    std::string line;
    bool found = false;
    while (std::getline(lines, line)) {
        if (line.find("chip.memory.bandwidth ") == std::string::npos) continue;
        found = true;
        INFO(line);
        CHECK(line.find("1.5TB/s") != std::string::npos);
        CHECK(line.find("--set") != std::string::npos);
        CHECK(line.find("[TRN2]") == std::string::npos);
    }
    CHECK(found);
}

TEST_CASE("describe shows a --config overlay with its value and the file as source", "[cli]") {
    TempDir dir;
    const std::string path = dir.write("overlay.yaml", "chip:\n  memory:\n    bandwidth: 1.5TB/s\n");
    const RunResult r = run_trnsim({"describe", "trn2", "--config", path});
    INFO(show(r));
    REQUIRE(r.exit_code == 0);
    std::istringstream lines(r.out);
    std::string line;
    bool found = false;
    while (std::getline(lines, line)) {
        if (line.find("chip.memory.bandwidth ") == std::string::npos) continue;
        found = true;
        INFO(line);
        CHECK(line.find("1.5TB/s") != std::string::npos);
        CHECK(line.find(path) != std::string::npos);
    }
    CHECK(found);
}

TEST_CASE("kernel gemm prints a result table", "[cli]") {
    const RunResult r = run_trnsim(kSmallGemm);
    INFO(show(r));
    REQUIRE(r.exit_code == 0);
    CHECK(r.err.empty());
    CHECK(r.out.find("gemm") != std::string::npos);
    CHECK(r.out.find("cycles") != std::string::npos);
    CHECK(r.out.find("TFLOPS") != std::string::npos);
}

TEST_CASE("kernel gemm --json writes a trnsim.kernel/1 object with every documented key", "[cli]") {
    TempDir dir;
    const std::string path = dir.file("result.json");
    std::vector<std::string> args = kSmallGemm;
    args.insert(args.end(), {"--chip", "trn2", "--dtype", "bf16", "--json", path});
    const RunResult r = run_trnsim(args, dir.path());
    INFO(show(r));
    REQUIRE(r.exit_code == 0);
    CHECK(dir.entries() == std::vector<std::string>{"result.json"});  // no leftover temporary

    const nlohmann::json j = read_json(path);
    INFO(j.dump(1).substr(0, 4000));
    CHECK(j.at("schema") == "trnsim.kernel/1");
    CHECK(j.at("op") == "gemm");
    CHECK(j.at("dtype") == "bf16");
    CHECK(j.at("chip") == "trn2");
    CHECK(j.at("shape").at("m") == 128);
    CHECK(j.at("shape").at("k") == 128);
    CHECK(j.at("shape").at("n") == 128);

    CHECK(j.at("cycles").is_number_integer());
    CHECK(j.at("cycles").get<long long>() > 0);
    CHECK(j.at("time_s").get<double>() > 0.0);
    CHECK(j.at("flops").get<double>() == Approx(2.0 * 128 * 128 * 128));
    CHECK(j.at("achieved_tflops").get<double>() > 0.0);
    CHECK(j.at("peak_tflops").get<double>() > 0.0);
    CHECK(j.at("achieved_tflops").get<double>() <= j.at("peak_tflops").get<double>());
    for (const char* engine : {"tensor", "vector", "scalar", "gpsimd", "dma"}) {
        INFO("utilization." << engine);
        const double u = j.at("utilization").at(engine).get<double>();
        CHECK(u >= 0.0);
        CHECK(u <= 1.0);
    }
    CHECK(j.at("tensor_engine").at("cycles").get<long long>() > 0);
    CHECK(j.at("tensor_engine").at("cycles").get<long long>() <= j.at("cycles").get<long long>());
    // A, B in BF16 read once, C written once.
    CHECK(j.at("hbm").at("read_bytes").get<long long>() == 2 * (128 * 128 * 2));
    CHECK(j.at("hbm").at("write_bytes").get<long long>() == 128 * 128 * 2);
    CHECK(j.at("sbuf_peak_bytes").get<long long>() > 0);
    CHECK(j.at("sim").at("wall_s").get<double>() >= 0.0);
    CHECK(j.at("sim").at("events").get<long long>() > 0);

    const nlohmann::json& config = j.at("config");
    REQUIRE(config.contains("chip.core.tensor_engine.clock"));
    CHECK(config.at("chip.core.tensor_engine.clock").dump().find("2.4GHz") != std::string::npos);
    REQUIRE(config.contains("chip.memory.bandwidth"));
    CHECK(config.at("chip.memory.bandwidth").dump().find("2.9TB/s") != std::string::npos);
}

TEST_CASE("The resolved config in the JSON carries a --set override", "[cli]") {
    TempDir dir;
    const std::string path = dir.file("result.json");
    std::vector<std::string> args = kSmallGemm;
    args.insert(args.end(), {"--set", "chip.memory.bandwidth=1.5TB/s", "--json", path});
    const RunResult r = run_trnsim(args, dir.path());
    INFO(show(r));
    REQUIRE(r.exit_code == 0);
    const nlohmann::json j = read_json(path);
    CHECK(j.at("config").at("chip.memory.bandwidth").dump().find("1.5TB/s") != std::string::npos);
}

TEST_CASE("A row-wise kernel writes JSON with its shape", "[cli]") {
    TempDir dir;
    const std::string path = dir.file("result.json");
    const RunResult r =
        run_trnsim({"kernel", "layernorm", "--rows", "128", "--cols", "256", "--json", path}, dir.path());
    INFO(show(r));
    REQUIRE(r.exit_code == 0);
    const nlohmann::json j = read_json(path);
    CHECK(j.at("schema") == "trnsim.kernel/1");
    CHECK(j.at("op") == "layernorm");
    CHECK(j.at("shape").at("rows") == 128);
    CHECK(j.at("shape").at("cols") == 256);
    CHECK(j.at("cycles").get<long long>() > 0);
}

TEST_CASE("With --functional the run reports a small error against the FP64 reference", "[cli]") {
    TempDir dir;
    const std::string path = dir.file("result.json");
    std::vector<std::string> args = kSmallGemm;
    args.insert(args.end(), {"--functional", "--json", path});
    const RunResult r = run_trnsim(args, dir.path());
    INFO(show(r));
    REQUIRE(r.exit_code == 0);
    CHECK(r.out.find("functional error") != std::string::npos);
    const nlohmann::json j = read_json(path);
    const double err = j.at("functional").at("max_rel_error").get<double>();
    CHECK(err >= 0.0);
    CHECK(err < 1e-2);  // BF16 inputs, FP32 accumulation
}

TEST_CASE("Two identical runs give identical JSON apart from the simulator's own host costs", "[cli]") {
    // sim.wall_s and sim.peak_rss_bytes measure the host running the simulator,
    // not the simulated hardware; everything else must be byte-identical.
    TempDir dir;
    std::vector<nlohmann::json> results;
    for (const char* name : {"a.json", "b.json"}) {
        std::vector<std::string> args = {"kernel", "gemm", "--m",          "256",    "--k",         "384",
                                         "--n",    "640",  "--functional", "--json", dir.file(name)};
        const RunResult r = run_trnsim(args, dir.path());
        INFO(show(r));
        REQUIRE(r.exit_code == 0);
        nlohmann::json j = read_json(dir.file(name));
        REQUIRE(j.at("sim").contains("wall_s"));
        j.at("sim").erase("wall_s");
        j.at("sim").erase("peak_rss_bytes");
        results.push_back(std::move(j));
    }
    CHECK(results[0].dump() == results[1].dump());
}

// ---- trnsim mem ------------------------------------------------------------------------------------------

namespace {
RunResult expect_mem_error(std::vector<std::string> args, std::initializer_list<std::string> needles) {
    return expect_error("mem", std::move(args), needles);
}
}  // namespace

TEST_CASE("mem with an unknown HBM part lists the parts", "[cli][mem]") {
    expect_mem_error({"--memory", "hbm9", "--requests", "10"}, {"hbm9", "hbm3-6400", "hbm2-2400"});
}

TEST_CASE("mem rejects a request size that is not a multiple of the access granularity", "[cli][mem]") {
    expect_mem_error({"--memory", "hbm3-6400", "--request-bytes", "48", "--requests", "10"},
                     {"--request-bytes 48", "multiple", "32 B"});
}

TEST_CASE("mem rejects zero requests", "[cli][mem]") {
    expect_mem_error({"--memory", "hbm3-6400", "--requests", "0"}, {"--requests", "Value 0", "1 to 100000000"});
}

TEST_CASE("mem rejects negative, huge and NaN traffic options with their ranges", "[cli][mem]") {
    // Unsigned options would take "-1" as 2^64 - 1: the text is checked first.
    expect_mem_error({"--requests", "-1"}, {"--requests", "-1", "1 to 100000000"});
    expect_mem_error({"--requests", "4294967297"}, {"--requests", "4294967297", "1 to 100000000"});
    expect_mem_error({"--request-bytes", "-32"}, {"--request-bytes", "-32", "1 to 1073741824"});
    expect_mem_error({"--outstanding", "-1"}, {"--outstanding", "-1", "1 to 1048576"});
    expect_mem_error({"--pattern", "strided", "--stride", "-32"}, {"--stride", "-32", "0 to"});
    expect_mem_error({"--seed", "-1"}, {"--seed", "-1", "0 to 4294967295"});
    expect_mem_error({"--read-ratio", "nan"}, {"--read-ratio nan", "0..1"});
}

TEST_CASE("mem rejects a stack count out of range", "[cli][mem]") {
    expect_mem_error({"--memory", "hbm3-6400", "--stacks", "0", "--requests", "10"}, {"--stacks 0", "1..64"});
    expect_mem_error({"--memory", "hbm3-6400", "--stacks", "65", "--requests", "10"}, {"--stacks 65", "1..64"});
}

TEST_CASE("mem rejects an unknown pattern", "[cli][mem]") {
    expect_mem_error({"--memory", "hbm3-6400", "--pattern", "zigzag", "--requests", "10"},
                     {"--pattern zigzag", "stream", "random", "strided"});
}

TEST_CASE("mem --json writes a trnsim.mem/1 object with the documented keys", "[cli][mem]") {
    TempDir dir;
    const RunResult r = run_trnsim({"mem", "--memory", "hbm3-6400", "--pattern", "random", "--request-bytes", "32",
                                    "--requests", "2000", "--json", dir.file("m.json")},
                                   dir.path());
    INFO(show(r));
    REQUIRE(r.exit_code == 0);
    std::ifstream in(dir.file("m.json"));
    const nlohmann::json j = nlohmann::json::parse(in);
    CHECK(j["schema"] == "trnsim.mem/1");
    for (const char* key : {"bandwidth_gbps", "peak_gbps", "row_hit_rate", "energy_pj_per_bit", "config"}) {
        INFO(key);
        CHECK(j.contains(key));
    }
    CHECK(j["latency_ns"].contains("mean"));
    CHECK(j["latency_ns"].contains("p50"));
    CHECK(j["latency_ns"].contains("p99"));
    // Reads alone (all of them here): the same figures.
    CHECK(j["read_latency_ns"]["reads"] == 2000);
    CHECK(j["read_latency_ns"]["mean"] == j["latency_ns"]["mean"]);
    CHECK(j["sim"].contains("wall_s"));
    CHECK(j["peak_gbps"].get<double>() == Approx(819.2));
    CHECK(j["config"]["chip.memory.hbm.part"]["value"] == "hbm3-6400");
}

TEST_CASE("run --cache keeps the collective memo's records: the next run replays them to the same result",
          "[cli][run]") {
    TempDir dir;
    const std::vector<std::string> base = {"run",   "--model", "gpt3-1.3b", "--tp",   "8",  "--dp",
                                           "8",     "--seq",   "1024",      "--gbs",  "64", "--cache",
                                           "cache", "--sp",    "false",     "--zero", "0"};
    auto run = [&](const std::string& name) {
        auto args = base;
        args.insert(args.end(), {"--json", dir.file(name)});
        const RunResult r = run_trnsim(args, dir.path());
        INFO(show(r));
        REQUIRE(r.exit_code == 0);
        return read_json(dir.file(name));
    };
    const auto memo_files = [&] {
        std::vector<std::filesystem::path> out;
        for (const auto& e : std::filesystem::directory_iterator(dir.file("cache")))
            if (e.path().filename().string().rfind("memo-", 0) == 0) out.push_back(e.path());
        return out;
    };
    const nlohmann::json cold = run("cold.json");
    REQUIRE(memo_files().size() == 1);
    nlohmann::json warm = run("warm.json");
    // The warm run simulates fewer wake-ups (its first sample replays what the cold one simulated)...
    CHECK(warm["sim"]["events"].get<double>() < cold["sim"]["events"].get<double>());
    // ... and reports the same step, to the bit.
    CHECK(warm["step_time_s"].get<double>() == cold["step_time_s"].get<double>());
    nlohmann::json cold_result = cold;
    cold_result.erase("sim");
    warm.erase("sim");
    CHECK(warm.dump() == cold_result.dump());
    // A damaged record file (cut short; or a record's digit changed, which its header's hash catches) is not
    // used: the run simulates again, to the same result, and writes the file anew.
    const auto file = memo_files().front();
    const auto read = [&] {
        std::ifstream in(file, std::ios::binary);
        return std::string(std::istreambuf_iterator<char>(in), {});
    };
    const std::string good = read();
    const std::size_t digit = good.find_first_of("123456789", good.find('\n'));
    REQUIRE(digit != std::string::npos);
    std::string changed = good;
    changed[digit] = changed[digit] == '9' ? '8' : static_cast<char>(changed[digit] + 1);
    for (const std::string& damaged : {good.substr(0, good.size() / 2), changed}) {
        { std::ofstream(file, std::ios::binary | std::ios::trunc) << damaged; }
        nlohmann::json again = run("again.json");
        CHECK(again["sim"]["events"] == cold["sim"]["events"]);  // simulated as the first time
        again.erase("sim");
        CHECK(again.dump() == warm.dump());
        CHECK(read() == good);
    }
    // Another setup (here, another link rate) keeps its own records.
    auto args = base;
    args.insert(args.end(), {"--set", "cluster.link.bandwidth=128GB/s"});
    REQUIRE(run_trnsim(args, dir.path()).exit_code == 0);
    CHECK(memo_files().size() == 2);
    // So does the same setup run by other code: the same trnsim with another build of one of its shared
    // libraries (a copy of libfmt with a byte appended, found first through LD_LIBRARY_PATH), as on a machine
    // with other library packages sharing the cache. It gets the same result.
    std::string fmt_library;
    {
        std::ifstream maps("/proc/self/maps");  // this test's own: it links libfmt too
        for (std::string line; std::getline(maps, line);)
            if (line.find("/libfmt.so") != std::string::npos) fmt_library = line.substr(line.find('/'));
    }
    REQUIRE(!fmt_library.empty());
    const std::string libraries = dir.file("libs");
    std::filesystem::create_directory(libraries);
    // Named as the loader looks for it (libfmt.so.9.1.0 -> libfmt.so.9).
    std::string soname = std::filesystem::path(fmt_library).filename().string();
    soname = soname.substr(0, soname.find('.', soname.find(".so.") + 4));
    const auto copy = std::filesystem::path(libraries) / soname;
    std::filesystem::copy_file(fmt_library, copy);
    { std::ofstream(copy, std::ios::binary | std::ios::app) << '\n'; }
    auto other_args = base;
    other_args.insert(other_args.end(), {"--json", dir.file("other.json")});
    const RunResult other = trnsim::testing::run_trnsim_in(other_args, dir.path(), {{"LD_LIBRARY_PATH", libraries}});
    INFO(show(other));
    REQUIRE(other.exit_code == 0);
    CHECK(memo_files().size() == 3);
    nlohmann::json other_result = read_json(dir.file("other.json"));
    other_result.erase("sim");
    CHECK(other_result.dump() == warm.dump());
}

TEST_CASE("run rejects parallelism that does not match the cluster, and bad options", "[cli][run]") {
    expect_error("run", {"--tp", "3"}, {"--tp 3"});
    expect_error("run", {"--tp", "8", "--dp", "4"}, {"--tp 8 x --pp 1 x --dp 4 = 32 ranks", "64"});
    expect_error("run", {"--model", "llama9"}, {"llama9", "llama3-8b"});
    expect_error("run", {"--dtype", "fp16"}, {"--dtype fp16", "bf16, fp8"});
    expect_error("run", {"--schedule", "zigzag"}, {"--schedule zigzag", "1f1b"});
    expect_error("run", {"--attention", "bogus"}, {"--attention bogus", "allowed flash, unfused"});
    // 136 GiB per chip of 96 (unfused attention keeps the s x s scores; with flash it would need 96.2 GiB).
    expect_error("run", {"--model", "llama3-70b", "--tp", "64", "--dp", "1", "--seq", "8192", "--attention", "unfused"},
                 {"--allow-oom"});
    // Sizes past the models' range are named by the run's own flags, not the kernels' or as wrapped numbers.
    expect_error("run", {"--gbs", "1125899906842628"}, {"--gbs 1125899906842628", "1..1099511627776"});
    expect_error("run", {"--seq", "536870912", "--allow-oom"}, {"--seq 536870912", "1..16777216"});
    expect_error("run", {"--mbs", "4096", "--gbs", "16384", "--allow-oom"}, {"--mbs 4096", "1..2048"});
}

TEST_CASE("run --json writes a trnsim.run/1 object with the documented keys", "[cli][run]") {
    TempDir dir;
    const RunResult r = run_trnsim({"run", "--model", "gpt3-1.3b", "--tp", "8", "--dp", "8", "--sp", "false", "--zero",
                                    "0", "--seq", "1024", "--gbs", "8", "--json", dir.file("r.json")},
                                   dir.path());
    INFO(show(r));
    REQUIRE(r.exit_code == 0);
    const nlohmann::json j = read_json(dir.file("r.json"));
    CHECK(j["schema"] == "trnsim.run/1");
    // The keys issue 5 names, at least.
    for (const char* key : {"step_time_s", "tokens_per_s", "sequences_per_s", "model_flops_per_step", "mfu", "hfu",
                            "breakdown", "memory", "energy", "simulated_ranks", "sim", "config"}) {
        INFO(key);
        CHECK(j.contains(key));
    }
    for (const char* key : {"per_chip_bytes", "capacity_bytes", "fits"}) CHECK(j["memory"].contains(key));
    for (const char* key : {"step_j", "per_token_j", "per_param_j", "per_param_token_pj", "by_component"})
        CHECK(j["energy"].contains(key));
    for (const char* key : {"wall_s", "events", "unique_kernels", "kernel_cache_hits"}) CHECK(j["sim"].contains(key));
    CHECK(j["cluster"]["ranks"] == 64);
    CHECK(j["config"]["cluster.ranks_per_chip"]["value"] == "4");
    const double step = j["step_time_s"].get<double>();
    CHECK(step > 0);
    CHECK(j["sequences_per_s"].get<double>() == Approx(8 / step));
    CHECK(j["tokens_per_s"].get<double>() == Approx(8 * 1024 / step));
    // HFU: the matrix products the graph runs (recompute included) over the step at peak. No activation
    // recompute here, but the flash backward recomputes QK^T, so it is above MFU (docs/workload.md section 4).
    CHECK(j["hfu"].get<double>() ==
          Approx(j["hardware_flops_per_step"].get<double>() / (step * j["peak_flops"].get<double>())));
    CHECK(j["hfu"].get<double>() > j["mfu"].get<double>());
    CHECK(j["sim"]["events"].get<double>() > 0);
    CHECK(j["simulated_ranks"].size() == 1);  // one stage: one representative
}

TEST_CASE("run --trace writes the stage timelines: the core track adds up to the core's busy time", "[cli][run]") {
    TempDir dir;
    const RunResult r =
        run_trnsim({"run", "--model", "gpt3-1.3b", "--tp", "8", "--dp", "8", "--sp", "false", "--zero", "0", "--seq",
                    "1024", "--gbs", "8", "--json", dir.file("r.json"), "--trace", dir.file("t.json")},
                   dir.path());
    INFO(show(r));
    REQUIRE(r.exit_code == 0);
    const nlohmann::json result = read_json(dir.file("r.json"));
    const nlohmann::json trace = read_json(dir.file("t.json"));
    double core_us = 0;
    int comm = 0;
    for (const auto& e : trace["traceEvents"]) {
        if (e["ph"] != "X") continue;
        if (e["tid"] == 0) core_us += e["dur"].get<double>();
        if (e["tid"] == 1) ++comm;
    }
    CHECK(comm > 0);
    CHECK(core_us * 1e-6 == Approx(result["breakdown"][0]["busy_s"].get<double>()).epsilon(1e-6));
    // Utilization counters: the stage's engines, the links and the chips' DMA rings, each 0..1, in time
    // order, idle again at the end. The tensor engine's, integrated, is at most the core's busy time.
    std::map<std::string, std::vector<std::pair<double, double>>> counters;
    for (const auto& e : trace["traceEvents"]) {
        if (e["ph"] == "C") counters[e["name"]].push_back({e["ts"].get<double>(), e["args"]["value"].get<double>()});
    }
    for (const char* engine : {"tensor", "vector", "scalar", "gpsimd", "dma", "hbm"})
        CHECK(counters.count(std::string("stage 0 ") + engine + " utilization") == 1);
    int links = 0, rings = 0;
    for (const auto& [name, points] : counters) {
        INFO(name);
        links += name.rfind("link ", 0) == 0 ? 1 : 0;
        rings += name.find("DMA rings") != std::string::npos ? 1 : 0;
        for (std::size_t i = 0; i < points.size(); ++i) {
            CHECK(points[i].second >= 0);
            CHECK(points[i].second <= 1);
            if (i > 0) CHECK(points[i].first >= points[i - 1].first);
        }
        CHECK(points.back().second == 0);
    }
    CHECK(links > 0);
    CHECK(rings > 0);
    const auto& tensor = counters["stage 0 tensor utilization"];
    double tensor_us = 0;
    for (std::size_t i = 0; i + 1 < tensor.size(); ++i)
        tensor_us += tensor[i].second * (tensor[i + 1].first - tensor[i].first);
    CHECK(tensor_us > 0);
    CHECK(tensor_us <= core_us * (1 + 1e-9));
}

TEST_CASE("describe --cluster prints the cluster's keys with their sources, and a chip or a cluster is required",
          "[cli][describe]") {
    const RunResult r = run_trnsim({"describe", "--cluster", "trn2-ultraserver"});
    INFO(show(r));
    REQUIRE(r.exit_code == 0);
    CHECK(r.out.find("cluster.topology") != std::string::npos);
    CHECK(r.out.find("torus3d:4x4x4") != std::string::npos);
    CHECK(r.out.find("chip.lnc") != std::string::npos);
    check_user_error(run_trnsim({"describe"}), {"--cluster"});
    check_user_error(run_trnsim({"describe", "trn2", "--cluster", "trn2.48xlarge"}), {"one of them"});
}
