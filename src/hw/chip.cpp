#include "trnsim/hw/chip.h"

#include <fmt/format.h>

#include "trnsim/core/error.h"

#include "trnsim/hw/hbm_memory.h"
#include "trnsim/hw/i_memory.h"
#include "trnsim/hw/ideal_memory.h"
#include "trnsim/hw/on_chip_fabric.h"

namespace trnsim::hw {

void declare_hw_params(ParamRegistry& r) {
    r.declare({"chip.name", ParamType::text, "chip name", std::nullopt, "", {}});
    r.declare({"chip.cores", ParamType::integer, "NeuronCores per chip", std::nullopt, "", {}, 1, 1024});
    r.declare({"chip.cc_cores",
               ParamType::integer,
               "collective-communication cores (CC-Cores) per chip: each drives one stream of a collective, so a "
               "rank's ring collectives run as chip.cc_cores / cluster.ranks_per_chip channels",
               std::nullopt,
               "",
               {},
               1,
               4096});
    r.declare({"chip.lnc",
               ParamType::integer,
               "physical NeuronCores per logical core (LNC): a training rank is one logical core",
               "1",
               "[LNC]",
               {},
               1,
               64});
    // Energy per event and static power (issue 5): the presets give each value with its source.
    r.declare({"chip.energy.mac_bf16",
               ParamType::energy,
               "one tensor-engine multiply-accumulate, BF16/FP16 inputs, FP32 accumulation",
               std::nullopt,
               "",
               {},
               0,
               1e-9});
    r.declare({"chip.energy.mac_fp8",
               ParamType::energy,
               "one multiply-accumulate with FP8 inputs",
               std::nullopt,
               "",
               {},
               0,
               1e-9});
    r.declare({"chip.energy.mac_fp32",
               ParamType::energy,
               "one multiply-accumulate with FP32 inputs",
               std::nullopt,
               "",
               {},
               0,
               1e-9});
    r.declare({"chip.energy.sbuf_byte",
               ParamType::energy,
               "one byte read from or written to SBUF or PSUM",
               std::nullopt,
               "",
               {},
               0,
               1e-9});
    r.declare({"chip.energy.static_power",
               ParamType::power,
               "power a chip draws whatever it does (leakage, clocks, uncore): charged for the whole step",
               std::nullopt,
               "",
               {},
               0,
               1e5});
    NeuronCoreSpec::declare(r);
    register_ideal_memory();
    register_hbm_memory();
    r.declare({"chip.memory.model", ParamType::choice, "memory model behind the DMA engines", "ideal", "",
               memory_model_names()});
    r.declare({"chip.memory.bandwidth",
               ParamType::bandwidth,
               "HBM bandwidth of the whole chip",
               std::nullopt,
               "",
               {},
               k_min_bandwidth,
               1e16});
    r.declare(
        {"chip.memory.capacity", ParamType::bytes, "HBM capacity of the whole chip", std::nullopt, "", {}, 1, 1e15});
    r.declare({"chip.memory.stacks", ParamType::integer, "HBM stacks", std::nullopt, "", {}, 1, 64});
    IdealMemorySpec::declare(r);
    HbmSpec::declare(r);
    FabricSpec::declare(r);
}

const ParamRegistry& hw_param_registry() {
    static const ParamRegistry registry = [] {
        ParamRegistry r;
        declare_hw_params(r);
        return r;
    }();
    return registry;
}

Config resolve_chip_config(const std::string& chip, const std::vector<std::string>& files,
                           const std::vector<std::string>& overrides) {
    // The HBM part is itself a preset layer under the chip's: find which part the chip, files and
    // overrides name, then resolve defaults -> part -> chip -> files -> overrides.
    auto upper_layers = [&](Config& c) {
        apply_preset_or_file(c, "chips", chip);
        for (const auto& f : files) c.apply_yaml_file(f);
        for (const auto& o : overrides) c.apply_override(o);
    };
    Config probe(hw_param_registry());
    probe.apply_defaults();
    upper_layers(probe);
    const std::string part = probe.get_text("chip.memory.hbm.part");
    Config config(hw_param_registry());
    config.apply_defaults();
    apply_preset_or_file(config, "memory", part);
    upper_layers(config);
    std::string layers = "chip '" + chip + "'";
    for (const auto& f : files) layers += " + " + f;
    config.check_complete(layers);
    return config;
}

ChipSpec ChipSpec::from_config(const Config& c) {
    ChipSpec s;
    s.name = c.get_text("chip.name");
    s.cores = static_cast<int>(c.get_int("chip.cores"));
    s.lnc = static_cast<int>(c.get_int("chip.lnc"));
    if (s.cores % s.lnc != 0) {
        throw UserError(fmt::format("chip.lnc {}: allowed a divisor of chip.cores ({})", s.lnc, s.cores));
    }
    s.core = NeuronCoreSpec::from_config(c);
    s.memory_model = c.get_text("chip.memory.model");
    s.memory_bandwidth = c.get_bandwidth("chip.memory.bandwidth");
    s.memory_capacity = c.get_bytes("chip.memory.capacity");
    s.memory_stacks = static_cast<int>(c.get_int("chip.memory.stacks"));
    return s;
}

double ChipSpec::core_peak_flops(DType dtype) const {
    const auto& te = core.tensor;
    double macs_per_cycle = static_cast<double>(te.rows) * te.cols;
    if (dtype == DType::fp32) macs_per_cycle /= te.fp32_rate;
    if (dtype == DType::fp8_e4m3 || dtype == DType::fp8_e5m2) macs_per_cycle *= te.fp8_k_pack;
    return 2.0 * macs_per_cycle * te.clock.hz;
}

}  // namespace trnsim::hw
