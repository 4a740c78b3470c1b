#include "trnsim/hw/hbm_spec.h"

#include <cmath>

#include <fmt/format.h>

#include "trnsim/core/error.h"

namespace trnsim::hw {

namespace {
const std::string k_p = "chip.memory.hbm.";

// A timing parameter: its key under chip.memory.hbm.timing, the Timing field it sets, its doc.
struct TimingKey {
    const char* key;
    int dram::Timing::*field;
    const char* doc;
};
// The analog timings, as durations.
const TimingKey k_durations[] = {
    {"cl", &dram::Timing::CL, "read latency tCL (RD to first data)"},
    {"cwl", &dram::Timing::CWL, "write latency tCWL"},
    {"rcdrd", &dram::Timing::RCDRD, "ACT to RD, tRCDRD"},
    {"rcdwr", &dram::Timing::RCDWR, "ACT to WR, tRCDWR"},
    {"rp", &dram::Timing::RP, "PRE to ACT, tRP"},
    {"ras", &dram::Timing::RAS, "ACT to PRE, tRAS"},
    {"rc", &dram::Timing::RC, "ACT to ACT same bank, tRC"},
    {"wr", &dram::Timing::WR, "write recovery tWR (end of write data to PRE)"},
    {"rtp", &dram::Timing::RTP, "RD to PRE, tRTP"},
    {"rrds", &dram::Timing::RRDS, "ACT to ACT, different bank group, tRRD_S"},
    {"rrdl", &dram::Timing::RRDL, "ACT to ACT, same bank group, tRRD_L"},
    {"faw", &dram::Timing::FAW, "four-activate window tFAW"},
    {"wtrs", &dram::Timing::WTRS, "write to read, different bank group, tWTR_S"},
    {"wtrl", &dram::Timing::WTRL, "write to read, same bank group, tWTR_L"},
    {"rtw", &dram::Timing::RTW, "read to write turnaround tRTW"},
    {"rfc", &dram::Timing::RFC, "all-bank refresh cycle tRFC"},
    {"rfcpb", &dram::Timing::RFCpb, "per-bank refresh cycle tRFCpb"},
    {"refi", &dram::Timing::REFI, "refresh interval tREFI"},
    {"rrefd", &dram::Timing::RREFD, "per-bank refresh to ACT/REFpb of another bank, tRREFD"},
};
// The data-bus and column timings, in CK.
const TimingKey k_cks[] = {
    {"bl", &dram::Timing::BL, "burst length on the data bus, CK"},
    {"ccds", &dram::Timing::CCDS, "column to column, different bank group, tCCD_S in CK"},
    {"ccdl", &dram::Timing::CCDL, "column to column, same bank group, tCCD_L in CK"},
    {"ccdr", &dram::Timing::CCDR, "column to column, different stack ID, tCCD_R in CK"},
    {"ppd", &dram::Timing::PPD, "PRE to PRE, tPPD in CK"},
};
}  // namespace

void HbmSpec::declare(ParamRegistry& r) {
    r.declare({k_p + "part", ParamType::text, "HBM part preset (configs/memory/)", "hbm3-6400", "", {}});
    r.declare({k_p + "ck", ParamType::frequency, "command clock CK", std::nullopt, "", {}, 1e8, 1e10});
    r.declare({k_p + "tick_multiplier",
               ParamType::integer,
               "controller ticks per CK (HBM3: 2, half-CK command slots)",
               std::nullopt,
               "",
               {},
               1,
               4});
    r.declare({k_p + "channels", ParamType::integer, "channels per stack", std::nullopt, "", {}, 1, 256});
    r.declare({k_p + "pseudo_channels", ParamType::integer, "pseudo-channels per channel", std::nullopt, "", {}, 1, 8});
    r.declare({k_p + "sids", ParamType::integer, "stack IDs per pseudo-channel", std::nullopt, "", {}, 1, 16});
    r.declare({k_p + "bank_groups", ParamType::integer, "bank groups per stack ID", std::nullopt, "", {}, 1, 64});
    r.declare({k_p + "banks_per_group", ParamType::integer, "banks per bank group", std::nullopt, "", {}, 1, 64});
    r.declare({k_p + "rows", ParamType::integer, "rows per bank", std::nullopt, "", {}, 1, 1 << 24});
    r.declare({k_p + "columns",
               ParamType::integer,
               "bursts per row (page = columns x burst_bytes)",
               std::nullopt,
               "",
               {},
               1,
               1 << 16});
    r.declare({k_p + "burst_bytes",
               ParamType::integer,
               "bytes per access (access granularity)",
               std::nullopt,
               "",
               {},
               1,
               4096});
    for (const auto& t : k_cks) {
        r.declare({k_p + "timing." + t.key, ParamType::integer, t.doc, std::nullopt, "", {}, 0, 1e6});
    }
    for (const auto& t : k_durations) {
        r.declare({k_p + "timing." + t.key, ParamType::duration, t.doc, std::nullopt, "", {}, 0, 1e-3});
    }
    r.declare({k_p + "bus.act",
               ParamType::integer,
               "ticks an ACT occupies the row command bus",
               std::nullopt,
               "",
               {},
               1,
               64});
    r.declare({k_p + "bus.pre",
               ParamType::integer,
               "ticks a PRE or REF occupies the row command bus",
               std::nullopt,
               "",
               {},
               1,
               64});
    r.declare({k_p + "bus.col",
               ParamType::integer,
               "ticks a RD or WR occupies the column command bus",
               std::nullopt,
               "",
               {},
               1,
               64});
    const struct {
        const char* key;
        const char* doc;
    } energies[] = {{"act", "energy of one ACT (core)"},
                    {"rd", "energy of one read burst (core)"},
                    {"wr", "energy of one write burst (core)"},
                    {"io_per_bit", "interface (PHY and I/O) energy per bit moved"},
                    {"ref_ab", "energy of one all-bank refresh of a pseudo-channel"},
                    {"ref_pb", "energy of one per-bank refresh"}};
    for (const auto& e : energies) {
        r.declare({k_p + "energy." + e.key, ParamType::energy, e.doc, std::nullopt, "", {}, 0, 1});
    }
    r.declare({k_p + "energy.active_standby",
               ParamType::power,
               "background power of a pseudo-channel with a row open",
               std::nullopt,
               "",
               {},
               0,
               100});
    r.declare({k_p + "energy.precharge_standby",
               ParamType::power,
               "background power of a pseudo-channel with all banks precharged",
               std::nullopt,
               "",
               {},
               0,
               100});
    r.declare({k_p + "controller.read_queue",
               ParamType::integer,
               "read queue entries per pseudo-channel",
               "128",
               "assumption: covers one pseudo-channel's bandwidth x (tRP + tRCD + tCL) about twice at 9.6 Gb/s, "
               "so that streams open the next rows in time (Ramulator 2 default 32, DRAMsim3 32-64)",
               {},
               1,
               4096});
    r.declare({k_p + "controller.write_queue",
               ParamType::integer,
               "write queue entries per pseudo-channel",
               "64",
               "assumption",
               {},
               1,
               4096});
    r.declare({k_p + "controller.write_high",
               ParamType::integer,
               "write-drain high watermark (entries)",
               "48",
               "assumption",
               {},
               1,
               4096});
    r.declare({k_p + "controller.write_low",
               ParamType::integer,
               "write-drain low watermark (entries)",
               "16",
               "assumption",
               {},
               0,
               4096});
    r.declare({k_p + "controller.page_policy",
               ParamType::choice,
               "open: rows stay open; closed: auto-precharge",
               "open",
               "",
               {"open", "closed"}});
    r.declare({k_p + "controller.refresh",
               ParamType::choice,
               "refresh mode: all_bank (REFab every tREFI), per_bank (REFpb every tREFI/banks, each bank once "
               "per round, idle banks first), off",
               "per_bank",
               "assumption: per-bank refresh ([JESD235]/[JESD238] REFpb), as HBM controllers use under load",
               {"all_bank", "per_bank", "off"}});
    r.declare({k_p + "controller.address_map",
               ParamType::choice,
               "ro_ba_bg_ra_co_ch: row, bank, bank group, stack ID, column, channel (channel bits lowest); "
               "xor_hashed: bank and channel bits XORed with low row bits",
               "ro_ba_bg_ra_co_ch",
               "",
               {"ro_ba_bg_ra_co_ch", "xor_hashed"}});
    r.declare({k_p + "check_timing",
               ParamType::boolean,
               "record every command and verify every timing constraint at the end (debugging; slower)",
               "false",
               "",
               {}});
}

HbmSpec HbmSpec::from_config(const Config& c, int stacks) {
    HbmSpec s;
    s.part = c.get_text(k_p + "part");
    s.stacks = stacks;
    s.ck = c.get_frequency(k_p + "ck");
    s.tick_multiplier = static_cast<int>(c.get_int(k_p + "tick_multiplier"));
    auto geti = [&](const std::string& k) { return static_cast<int>(c.get_int(k_p + k)); };
    s.org.channels = geti("channels");
    s.org.pseudo_channels = geti("pseudo_channels");
    s.org.sids = geti("sids");
    s.org.bank_groups = geti("bank_groups");
    s.org.banks_per_group = geti("banks_per_group");
    s.org.rows = geti("rows");
    s.org.columns = geti("columns");
    s.org.burst_bytes = geti("burst_bytes");
    const double tick_hz = s.tick_hz();
    for (const auto& t : k_cks) s.timing.*(t.field) = geti(std::string("timing.") + t.key) * s.tick_multiplier;
    for (const auto& t : k_durations) {
        // Rounded up to whole ticks; values quoted to the picosecond (14.167 ns for 17 CK at 1.2 GHz) are
        // within a hundredth of a tick of the intended count.
        const double ticks = c.get_duration(k_p + "timing." + t.key).seconds * tick_hz;
        s.timing.*(t.field) = static_cast<int>(std::ceil(ticks - 0.01));
    }
    const int banks = s.org.sids * s.org.bank_groups * s.org.banks_per_group;
    s.timing.REFIpb = std::max(1, s.timing.REFI / banks);
    s.timing.act_bus = geti("bus.act");
    s.timing.pre_bus = geti("bus.pre");
    s.timing.col_bus = geti("bus.col");
    s.controller.read_queue = geti("controller.read_queue");
    s.controller.write_queue = geti("controller.write_queue");
    s.controller.write_high = geti("controller.write_high");
    s.controller.write_low = geti("controller.write_low");
    if (s.controller.write_low >= s.controller.write_high || s.controller.write_high > s.controller.write_queue) {
        throw UserError(
            fmt::format("chip.memory.hbm.controller: write_low {} < write_high {} <= write_queue {} "
                        "is required",
                        s.controller.write_low, s.controller.write_high, s.controller.write_queue));
    }
    s.controller.page =
        c.get_text(k_p + "controller.page_policy") == "closed" ? dram::PagePolicy::closed : dram::PagePolicy::open;
    const auto refresh = c.get_text(k_p + "controller.refresh");
    s.controller.refresh = refresh == "per_bank" ? dram::RefreshMode::per_bank
                           : refresh == "off"    ? dram::RefreshMode::off
                                                 : dram::RefreshMode::all_bank;
    s.map = c.get_text(k_p + "controller.address_map") == "xor_hashed" ? dram::MapScheme::xor_hashed
                                                                       : dram::MapScheme::ro_ba_bg_ra_co_ch;
    s.energy.act_j = c.get_energy(k_p + "energy.act").joules;
    s.energy.rd_j = c.get_energy(k_p + "energy.rd").joules;
    s.energy.wr_j = c.get_energy(k_p + "energy.wr").joules;
    s.energy.io_per_bit_j = c.get_energy(k_p + "energy.io_per_bit").joules;
    s.energy.ref_ab_j = c.get_energy(k_p + "energy.ref_ab").joules;
    s.energy.ref_pb_j = c.get_energy(k_p + "energy.ref_pb").joules;
    s.energy.active_standby_w = c.get_power(k_p + "energy.active_standby").watts;
    s.energy.precharge_standby_w = c.get_power(k_p + "energy.precharge_standby").watts;
    s.check_timing = c.get_bool(k_p + "check_timing");
    return s;
}

}  // namespace trnsim::hw
