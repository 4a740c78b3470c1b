#include <cstdio>
#include <fstream>

#include <catch2/catch.hpp>

#include "trnsim/core/error.h"
#include "trnsim/hw/chip.h"

using namespace trnsim;

namespace {
ParamRegistry small_registry() {
    ParamRegistry r;
    r.declare({"chip.name", ParamType::text, "name", std::nullopt, "", {}});
    r.declare({"chip.core.clock", ParamType::frequency, "clock", "1GHz", "[SRC]", {}, 1e6, 1e11});
    r.declare({"chip.core.rows", ParamType::integer, "rows", "128", "", {}, 1, 4096});
    r.declare({"chip.core.mode", ParamType::choice, "mode", "ws", "", {"ws", "os", "is"}});
    r.declare({"chip.memory.bandwidth", ParamType::bandwidth, "bw", std::nullopt, "", {}, 1, 1e16});
    return r;
}
}  // namespace

TEST_CASE("layers apply in order and each value remembers its source", "[config]") {
    const auto reg = small_registry();
    Config c(reg);
    c.apply_defaults();
    CHECK(c.raw("chip.core.clock").source == "default [SRC]");
    c.apply_yaml_text(
        "chip:\n  name: x\n  core:\n    clock: {value: 2GHz, source: \"[DOC]\"}\n  memory:\n    bandwidth: 1TB/s\n",
        "preset x");
    CHECK(c.get_frequency("chip.core.clock").hz == Approx(2e9));
    CHECK(c.raw("chip.core.clock").source == "preset x [DOC]");
    c.apply_override("chip.core.rows=64");
    CHECK(c.get_int("chip.core.rows") == 64);
    CHECK(c.raw("chip.core.rows").source == "--set");
    c.check_complete();
}

TEST_CASE("an unknown key names the origin and key, suggests the nearest and lists the allowed ones", "[config]") {
    const auto reg = small_registry();
    Config c(reg);
    CHECK_THROWS_WITH(c.apply_yaml_text("chip:\n  core:\n    rowz: 3\n", "my.yaml"),
                      Catch::Contains("my.yaml") && Catch::Contains("chip.core.rowz") &&
                          Catch::Contains("did you mean 'chip.core.rows'") && Catch::Contains("chip.core.mode"));
}

TEST_CASE("wrong types, missing units, bad choices and out-of-range values are errors", "[config]") {
    const auto reg = small_registry();
    Config c(reg);
    CHECK_THROWS_WITH(c.apply_override("chip.memory.bandwidth=2900"), Catch::Contains("no unit"));
    CHECK_THROWS_WITH(c.apply_override("chip.core.mode=xs"), Catch::Contains("one of ws, os, is"));
    CHECK_THROWS_WITH(c.apply_override("chip.core.rows=0"),
                      Catch::Contains("out of range") && Catch::Contains("[1, 4096]"));
    CHECK_THROWS_WITH(c.apply_override("chip.core.rows=1.5"), Catch::Contains("not an integer"));
    CHECK_THROWS_WITH(c.apply_override("chip.core.rows"), Catch::Contains("dotted.key=value"));
    CHECK_THROWS_WITH(c.apply_yaml_text("chip: [1, 2]", "f.yaml"),
                      Catch::Contains("f.yaml") && Catch::Contains("list"));
    CHECK_THROWS_WITH(c.apply_yaml_text("chip:\n  core: {rows: [", "g.yaml"), Catch::Contains("YAML syntax error"));
}

TEST_CASE("a missing required key is reported with what it needs", "[config]") {
    const auto reg = small_registry();
    Config c(reg);
    c.apply_defaults();
    CHECK_THROWS_WITH(c.check_complete(), Catch::Contains("chip.name"));
}

TEST_CASE("every chip preset resolves completely, with a source on every number it sets", "[config]") {
    for (const auto& name : preset_names("chips")) {
        const Config c = hw::resolve_chip_config(name, {}, {});
        const auto chip = hw::ChipSpec::from_config(c);
        CHECK(chip.name == name);
        for (const auto& [key, v] : c.values()) {
            const ParamType type = c.registry().find(key)->type;
            const bool is_number = type != ParamType::text && type != ParamType::choice && type != ParamType::boolean;
            if (v.source.rfind("preset", 0) == 0 && is_number) {
                INFO(name << ": " << key << " from " << v.source);
                CHECK((v.source.find('[') != std::string::npos || v.source.find("assumption") != std::string::npos ||
                       v.source.find("derived") != std::string::npos));
            }
        }
    }
}

TEST_CASE("presets carry the documented chip facts", "[config]") {
    const auto trn2 = hw::ChipSpec::from_config(hw::resolve_chip_config("trn2", {}, {}));
    CHECK(trn2.cores == 8);
    CHECK(trn2.memory_bandwidth.bytes_per_s == Approx(2.9e12));
    CHECK(trn2.core.sbuf_partition_size.count == 224u * 1024u);
    CHECK(trn2.core.tensor.clock.hz == Approx(2.4e9));
    // 128 x 128 PEs x 2 FLOP x 2.4 GHz = 78.6 TFLOPS BF16 per core [NKI-ARCH2]; FP8 double-row twice that.
    CHECK(trn2.core_peak_flops(DType::bf16) == Approx(78.6432e12));
    CHECK(trn2.core_peak_flops(DType::fp8_e4m3) == Approx(2 * 78.6432e12));
    CHECK(trn2.core_peak_flops(DType::fp32) == Approx(78.6432e12 / 4));
    const auto trn1 = hw::ChipSpec::from_config(hw::resolve_chip_config("trn1", {}, {}));
    CHECK(trn1.core_peak_flops(DType::bf16) == Approx(91.75e12).epsilon(0.001));
    const auto trn3 = hw::ChipSpec::from_config(hw::resolve_chip_config("trn3", {}, {}));
    CHECK(trn3.core_peak_flops(DType::fp8_e4m3) == Approx(314.6e12).epsilon(0.001));
}

TEST_CASE("a user file can start from a preset with base and override it", "[config]") {
    const std::string path = "test_config_user.yaml";
    {
        std::ofstream f(path);
        f << "base: trn2\nchip:\n  name: my-trn2\n  core:\n    tensor_engine:\n      rows: 256\n    sbuf:\n      "
             "partitions: 256\n      partition_size: 512KiB\n";
    }
    const Config c = hw::resolve_chip_config(path, {}, {"chip.memory.bandwidth=4TB/s"});
    std::remove(path.c_str());
    const auto chip = hw::ChipSpec::from_config(c);
    CHECK(chip.name == "my-trn2");
    CHECK(chip.core.tensor.rows == 256);
    CHECK(chip.core.tensor.clock.hz == Approx(2.4e9));
    CHECK(chip.memory_bandwidth.bytes_per_s == Approx(4e12));
    CHECK(c.raw("chip.core.tensor_engine.rows").source == path);
}

TEST_CASE("an unknown preset lists the known ones", "[config]") {
    CHECK_THROWS_WITH(hw::resolve_chip_config("trn9", {}, {}),
                      Catch::Contains("unknown chip preset 'trn9'") && Catch::Contains("trn1, trn2, trn3"));
}
