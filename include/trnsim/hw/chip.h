#pragma once
// A chip as this issue models it: `cores` identical NeuronCores sharing the chip's memory. For a kernel,
// one core is simulated against its share of the memory (ideal model: chip bandwidth / cores).

#include <string>

#include "trnsim/core/config.h"
#include "trnsim/core/numeric.h"
#include "trnsim/hw/neuron_core.h"

namespace trnsim::hw {

struct ChipSpec {
    std::string name;
    int cores = 1;
    int lnc = 1;  // physical cores per logical core (a training rank)
    NeuronCoreSpec core;
    std::string memory_model;
    Bandwidth memory_bandwidth;  // whole chip
    Bytes memory_capacity;
    int memory_stacks = 1;

    static ChipSpec from_config(const Config& config);
    // Tensor-engine peak of one core for an input dtype, FLOP/s (2 per multiply-accumulate).
    double core_peak_flops(DType dtype) const;
};

// Declares every hardware parameter (chip, core, engines, DMA, memory models).
void declare_hw_params(ParamRegistry& registry);
// The registry with every hardware parameter declared; built once.
const ParamRegistry& hw_param_registry();

// Resolves a chip config: defaults, then the preset or file `chip`, then user files, then overrides.
Config resolve_chip_config(const std::string& chip, const std::vector<std::string>& files,
                           const std::vector<std::string>& overrides);

}  // namespace trnsim::hw
