// `trnsim collective` through the real binary ($TRNSIM_BIN, set by CTest): every user error exits with
// code 2, prints one line "trnsim: error: ..." naming the option or key and what is allowed, and writes no
// file; successful runs write trnsim.collective/1 JSON.
#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

namespace fs = std::filesystem;

namespace {

struct Run {
    int exit_code = -1;
    std::string out, err;
};

std::string slurp(const std::string& path) {
    std::ifstream in(path);
    std::stringstream s;
    s << in.rdbuf();
    return s.str();
}

struct TempDir {
    std::string path;
    TempDir() {
        const char* base = std::getenv("TMPDIR");
        std::string pattern = std::string(base != nullptr && *base != '\0' ? base : "/tmp") + "/trnsim-coll-XXXXXX";
        std::vector<char> buf(pattern.begin(), pattern.end());
        buf.push_back('\0');
        REQUIRE(::mkdtemp(buf.data()) != nullptr);
        path = buf.data();
    }
    ~TempDir() {
        std::error_code ec;
        fs::remove_all(path, ec);
    }
    std::vector<std::string> entries() const {
        std::vector<std::string> names;
        for (const auto& e : fs::directory_iterator(path)) names.push_back(e.path().filename().string());
        return names;
    }
};

// Runs trnsim in `cwd`, capturing stdout and stderr through files in a separate directory.
Run trnsim(const std::vector<std::string>& args, const std::string& cwd) {
    const char* bin_env = std::getenv("TRNSIM_BIN");
    if (bin_env == nullptr || *bin_env == '\0') FAIL("TRNSIM_BIN is not set: run through CTest");
    const std::string bin = fs::absolute(bin_env).string();
    TempDir capture;
    const std::string out_path = capture.path + "/out", err_path = capture.path + "/err";
    std::vector<std::string> argv_storage{bin};
    argv_storage.insert(argv_storage.end(), args.begin(), args.end());
    std::vector<char*> argv;
    for (auto& a : argv_storage) argv.push_back(a.data());
    argv.push_back(nullptr);
    const pid_t pid = ::fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
        const int o = ::open(out_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
        const int e = ::open(err_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
        ::dup2(o, STDOUT_FILENO);
        ::dup2(e, STDERR_FILENO);
        if (::chdir(cwd.c_str()) != 0) ::_exit(126);
        ::execv(bin.c_str(), argv.data());
        ::_exit(127);
    }
    int status = 0;
    ::waitpid(pid, &status, 0);
    Run r;
    r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    r.out = slurp(out_path);
    r.err = slurp(err_path);
    return r;
}

// `trnsim collective ARGS --json out.json` in an empty directory must fail with the user-error contract,
// name every needle, and leave the directory empty.
void expect_error(std::vector<std::string> args, std::initializer_list<std::string> needles) {
    TempDir dir;
    args.insert(args.begin(), "collective");
    args.push_back("--json");
    args.push_back(dir.path + "/out.json");
    const Run r = trnsim(args, dir.path);
    INFO("exit " << r.exit_code << "\nstdout: " << r.out << "\nstderr: " << r.err);
    CHECK(r.exit_code == 2);
    CHECK(r.out.empty());
    CHECK(r.err.rfind("trnsim: error: ", 0) == 0);
    CHECK(std::count(r.err.begin(), r.err.end(), '\n') == 1);
    for (const auto& n : needles) {
        INFO("expected in the message: " << n);
        CHECK(r.err.find(n) != std::string::npos);
    }
    CHECK(dir.entries().empty());
}

}  // namespace

TEST_CASE("collective: an unknown cluster preset is rejected with the list of presets", "[cli][collective]") {
    expect_error({"--cluster", "trn9.huge", "--bytes", "1MiB"},
                 {"--cluster 'trn9.huge'", "trn1.32xlarge", "trn2.48xlarge", "trn2-ultraserver", "trn3-ultraserver-64",
                  "trn3-ultraserver-144"});
}

TEST_CASE("collective: an unknown op is rejected with the list of ops", "[cli][collective]") {
    expect_error({"--op", "all-sum", "--bytes", "1MiB"}, {"--op all-sum", "all-reduce", "all-gather", "reduce-scatter",
                                                          "all-to-all", "broadcast", "send-recv"});
}

TEST_CASE("collective: an unknown algorithm is rejected with the list of algorithms", "[cli][collective]") {
    expect_error({"--algorithm", "butterfly", "--bytes", "1MiB"},
                 {"--algorithm butterfly", "ring", "ring-bidir", "mesh", "rdh", "torus2d", "hierarchical", "auto"});
}

TEST_CASE("collective: rdh on a non-power-of-two rank count is rejected", "[cli][collective]") {
    expect_error({"--algorithm", "rdh", "--ranks", "12", "--bytes", "1MiB"}, {"--algorithm rdh", "power-of-two", "12"});
}

TEST_CASE("collective: ranks that do not fit the cluster are rejected with the allowed range", "[cli][collective]") {
    expect_error({"--ranks", "17", "--bytes", "1MiB"}, {"--ranks 17", "2..16"});
    expect_error({"--ranks", "1", "--bytes", "1MiB"}, {"--ranks 1", "at least 2"});
    expect_error({"--cluster", "trn2-ultraserver", "--ranks", "65", "--bytes", "1MiB"}, {"--ranks 65", "2..64"});
    expect_error({"--ranks", "0", "--bytes", "1MiB"}, {"--ranks 0", "at least 2"});
}

TEST_CASE("collective: a size that is not whole elements, and a root without a broadcast, are rejected",
          "[cli][collective]") {
    expect_error({"--bytes", "3B"}, {"--bytes 3B", "fp32", "a multiple of 4 B"});
    expect_error({"--bytes", "2B:64B", "--dtype", "fp32"}, {"--bytes 2B:64B", "2 B", "a multiple of 4 B"});
    expect_error({"--bytes", "1MiB", "--root", "5"}, {"--root 5", "--op broadcast"});
}

TEST_CASE("collective: a bandwidth below the simulator's range, and a simulation past its clock, are rejected",
          "[cli][collective]") {
    expect_error({"--bytes", "1MiB", "--set", "cluster.link.bandwidth=1B/s"},
                 {"cluster.link.bandwidth", "1B/s", "from 100MB/s"});
    // 4 TiB over 100 MB/s: 44000 s, past 2^64 fs (in a few large packets, so that it takes no time to find out).
    expect_error({"--op", "all-gather", "--bytes", "4TiB", "--ranks", "2", "--set", "cluster.link.bandwidth=100MB/s",
                  "--set", "cluster.link.packet=1GiB", "--set", "cluster.topology=ring:2"},
                 {"ran past 18447 s of simulated time (2^64 fs)"});
}

TEST_CASE("collective: torus2d on a topology that is not a torus is rejected", "[cli][collective]") {
    expect_error({"--algorithm", "torus2d", "--set", "cluster.topology=ring:16", "--bytes", "1MiB"},
                 {"--algorithm torus2d", "torus2d:AxB", "ring:16"});
}

TEST_CASE("collective: an op an algorithm does not implement is rejected with the algorithms that do",
          "[cli][collective]") {
    expect_error({"--op", "all-to-all", "--algorithm", "rdh", "--bytes", "1MiB"},
                 {"--algorithm rdh", "all-to-all", "mesh"});
}

TEST_CASE("collective: zero, malformed and reversed sizes are rejected", "[cli][collective]") {
    expect_error({"--bytes", "0B"}, {"--bytes 0", "positive"});
    expect_error({"--bytes", "12parsecs"}, {"--bytes 12parsecs", "KiB"});
    expect_error({"--bytes", "1GiB:1KiB"}, {"--bytes 1GiB:1KiB", "LO <= HI"});
    expect_error({"--bytes", "0B:1KiB"}, {"--bytes 0B:1KiB", "0 < LO"});
}

TEST_CASE("collective: a missing --bytes is rejected", "[cli][collective]") {
    expect_error({"--op", "all-reduce"}, {"--bytes"});
}

TEST_CASE("collective: an unknown dtype and a bad node count are rejected", "[cli][collective]") {
    expect_error({"--dtype", "fp64", "--bytes", "1MiB"}, {"--dtype fp64", "fp32", "bf16"});
    expect_error({"--nodes", "0", "--bytes", "1MiB"}, {"--nodes 0", "1..4096"});
}

TEST_CASE("collective: a bad topology, an unknown key and a value without unit are rejected", "[cli][collective]") {
    expect_error({"--set", "cluster.topology=torus2d:4", "--bytes", "1MiB"},
                 {"cluster.topology", "torus2d takes 2 sizes", "torus2d:AxB"});
    expect_error({"--set", "cluster.topology=mobius:8", "--bytes", "1MiB"}, {"cluster.topology", "mobius", "ring:N"});
    expect_error({"--set", "cluster.lnk.bandwidth=1GB/s", "--bytes", "1MiB"},
                 {"cluster.lnk.bandwidth", "cluster.link"});
    expect_error({"--set", "cluster.link.bandwidth=100", "--bytes", "1MiB"}, {"cluster.link.bandwidth", "B/s"});
}

TEST_CASE("collective: --json into a directory that does not exist fails and writes nothing", "[cli][collective]") {
    TempDir dir;
    const Run r = trnsim({"collective", "--bytes", "1MiB", "--json", dir.path + "/no/such/dir/out.json"}, dir.path);
    CHECK(r.exit_code == 2);
    CHECK(r.err.find("--json") != std::string::npos);
    CHECK(dir.entries().empty());
}

TEST_CASE("collective --json writes a trnsim.collective/1 object with the documented keys", "[cli][collective]") {
    TempDir dir;
    const Run r = trnsim({"collective", "--cluster", "trn2.48xlarge", "--op", "all-reduce", "--bytes", "64MiB",
                          "--algorithm", "ring", "--json", dir.path + "/c.json"},
                         dir.path);
    INFO(r.err);
    REQUIRE(r.exit_code == 0);
    CHECK(r.out.find("busbw(GB/s)") != std::string::npos);
    std::ifstream in(dir.path + "/c.json");
    const auto j = nlohmann::json::parse(in);
    CHECK(j["schema"] == "trnsim.collective/1");
    for (const char* k :
         {"time_s", "algbw_gbps", "busbw_gbps", "algorithm", "links", "points", "sim", "config", "cluster"})
        CHECK(j.contains(k));
    CHECK(j["algorithm"] == "ring");
    CHECK(j["sim"].contains("wall_s"));
    CHECK(j["links"]["used"].get<int>() == 16);  // the Hamiltonian ring of the 4x4 torus, one direction
    CHECK(j["config"]["cluster.topology"]["value"] == "torus2d:4x4");
    CHECK(j["busbw_gbps"].get<double>() == Approx(j["algbw_gbps"].get<double>() * 2 * 15 / 16));
}

TEST_CASE("collective sweep writes one object with a point per size", "[cli][collective]") {
    TempDir dir;
    const Run r = trnsim({"collective", "--cluster", "trn2.48xlarge", "--nodes", "2", "--bytes", "1KiB:1MiB", "--json",
                          dir.path + "/s.json"},
                         dir.path);
    INFO(r.err);
    REQUIRE(r.exit_code == 0);
    std::ifstream in(dir.path + "/s.json");
    const auto j = nlohmann::json::parse(in);
    REQUIRE(j["points"].size() == 11);
    CHECK(j["points"][0]["bytes"] == 1024);
    CHECK(j["points"][10]["bytes"] == 1 << 20);
    CHECK(j["points"][10]["ranks"] == 32);
    CHECK(j["cluster"]["nodes"] == 2);
}

TEST_CASE("presets lists the cluster presets", "[cli][collective]") {
    TempDir dir;
    const Run r = trnsim({"presets"}, dir.path);
    REQUIRE(r.exit_code == 0);
    for (const char* n :
         {"trn1.32xlarge", "trn2.48xlarge", "trn2-ultraserver", "trn3-ultraserver-64", "trn3-ultraserver-144"})
        CHECK(r.out.find(n) != std::string::npos);
}
