#pragma once
// Parameters of the HBM model (chip.memory.hbm.*), declared once, and their conversion into controller
// ticks. A part preset (configs/memory/<part>.yaml) gives the organisation, the timings and the command
// energies; the chip preset names its part (chip.memory.hbm.part) and stack count (chip.memory.stacks).
// Analog timings are durations, held in ns and rounded up to whole controller ticks at the part's clock
// (the practice memory.md A1.6 describes for re-timing a part); data-bus and command-bus timings are CK
// and tick counts.

#include <string>

#include "trnsim/core/config.h"
#include "trnsim/core/units.h"
#include "trnsim/hw/dram_address.h"
#include "trnsim/hw/dram_channel.h"
#include "trnsim/hw/dram_timing.h"

namespace trnsim::hw {

struct HbmEnergy {
    double act_j = 0, rd_j = 0, wr_j = 0, io_per_bit_j = 0, ref_ab_j = 0, ref_pb_j = 0;
    double active_standby_w = 0, precharge_standby_w = 0;  // per pseudo-channel
};

struct HbmSpec {
    std::string part;
    int stacks = 1;
    Frequency ck;
    int tick_multiplier = 1;
    dram::Organization org;
    dram::Timing timing;  // in ticks
    dram::ControllerSpec controller;
    dram::MapScheme map = dram::MapScheme::ro_ba_bg_ra_co_ch;
    HbmEnergy energy;
    bool check_timing = false;

    double tick_hz() const { return ck.hz * tick_multiplier; }
    int pseudo_channels_total() const { return stacks * org.channels * org.pseudo_channels; }
    // Data-bus peak of all modelled stacks: one burst per BL per pseudo-channel.
    double peak_bytes_per_s() const {
        return static_cast<double>(pseudo_channels_total()) * org.burst_bytes * tick_hz() / timing.BL;
    }

    static void declare(ParamRegistry& registry);
    // `stacks`: how many stacks this memory instance models (a kernel's core sees its local stacks).
    static HbmSpec from_config(const Config& config, int stacks);
};

}  // namespace trnsim::hw
