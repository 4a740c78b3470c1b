#pragma once
// JEDEC timing of one HBM pseudo-channel (PC): its organization, its timing parameters in controller ticks,
// the DRAM commands, and a checker that verifies a command log against every constraint.
//
// The constraint table is Ramulator 2.1's HBM3/HBM2 one (python/ramulator/dram/hbm3.py, hbm2.py; copied in
// ../shared/reference/memory.md A1.1), applied per PC, per stack ID (SID), per bank group and per bank,
// plus what the standard implies for legality: refresh needs precharged banks (PRE/PREA -> REF >= tRP,
// ACT -> REF >= tRC, RDA/WRA -> REF after the auto-precharge), nothing reaches a PC during tRFC, a PREA
// waits for every bank's tRAS/tRTP/tWR, and each command occupies its command bus (separate row and
// column buses on HBM2/HBM3). The full table is `rules()` in src/hw/dram_timing.cpp; PseudoChannel
// (dram_channel.h) enforces the same set. Plain C++: the SystemC wrapper lives elsewhere.

#include <cstdint>
#include <string>
#include <vector>

namespace trnsim::hw::dram {

// One pseudo-channel and where it sits in a stack (channels, pseudo_channels: address mapping only).
struct Organization {
    int channels = 16;        // per stack
    int pseudo_channels = 2;  // per channel
    int sids = 1;             // stack IDs per pseudo-channel (HBM3: 1, 2 or 4; HBM2: 1)
    int bank_groups = 4;      // per SID
    int banks_per_group = 4;
    int rows = 16384;
    int columns = 32;              // bursts per row (page = columns * burst_bytes)
    int burst_bytes = 32;          // access granularity of a pseudo-channel
    bool dual_command_bus = true;  // separate row (ACT/PRE/REF) and column (RD/WR) command buses

    int banks() const { return sids * bank_groups * banks_per_group; }  // per pseudo-channel, <= 64
    // Flat bank index within the pseudo-channel: (sid, bank group, bank).
    int bank_index(int sid, int bank_group, int bank) const {
        return (sid * bank_groups + bank_group) * banks_per_group + bank;
    }
    // Throws std::invalid_argument naming the first bad field.
    void validate() const;
};

// Timing parameters in controller ticks. HBM3 ticks at half CK (Ramulator's tick_multiplier 2): the caller
// converts CK values into ticks. Write recovery and turnarounds follow Ramulator's expressions:
// WR -> PRE >= CWL + BL + WR, WR -> RD >= CWL + BL + WTR_S/L, RDA -> ACT >= RTP + RP.
struct Timing {
    int BL = 0, CL = 0, CWL = 0, RCDRD = 0, RCDWR = 0, RP = 0, RAS = 0, RC = 0, WR = 0, RTP = 0, CCDS = 0, CCDL = 0,
        CCDR = 0, RRDS = 0, RRDL = 0, FAW = 0, WTRS = 0, WTRL = 0, RTW = 0, RFC = 0, RFCpb = 0, REFI = 0, REFIpb = 0,
        RREFD = 0, PPD = 0;
    int act_bus = 1;  // ticks an ACT occupies the row command bus (HBM3: 3 half-CK ticks = 1.5 CK)
    int pre_bus = 1;  // PRE/PREA/REFab/REFpb occupancy of the row bus
    int col_bus = 1;  // RD/WR/RDA/WRA occupancy of the column bus

    // Throws std::invalid_argument naming the first bad field: values outside [0, 2^20) ticks, BL or a bus
    // occupancy < 1, REFI <= RFC or REFIpb <= RREFD (REFI, REFIpb 0: not given; refresh modes need them).
    void validate() const;
};

enum class Command : std::uint8_t { ACT, PRE, PREA, RD, WR, RDA, WRA, REFab, REFpb };
constexpr int kCommandKinds = 9;

const char* to_string(Command c);
inline bool is_read(Command c) {
    return c == Command::RD || c == Command::RDA;
}
inline bool is_write(Command c) {
    return c == Command::WR || c == Command::WRA;
}
inline bool is_column(Command c) {
    return is_read(c) || is_write(c);
}
inline bool is_row(Command c) {
    return !is_column(c);
}
// PREA and REFab address the whole pseudo-channel: their sid/bank_group/bank/row are -1.
inline bool is_pc_wide(Command c) {
    return c == Command::PREA || c == Command::REFab;
}

struct IssuedCommand {
    std::uint64_t tick;
    Command cmd;
    int sid, bank_group, bank, row;  // row opened (ACT), accessed (RD/WR...) or closed (PRE); -1 otherwise
};

// Verifies a command log of one pseudo-channel: every constraint of the table (per PC, per SID, sibling
// SID, per bank group, per bank), the tFAW window (at most 4 ACTs in any tFAW ticks), refresh (nothing
// reaches a refreshing bank or PC), bank-state legality (ACT only to a closed bank, RD/WR only to the open
// row, PRE only to an open bank, REF only with the bank(s) precharged; RDA/WRA close the bank) and command
// bus occupancy. Messages name both commands, their ticks and the constraint, e.g.
// "tRCDRD: RD at 40 only 10 after ACT at 30, needs 62 (sid 0 bg 1 bank 2)".
class TimingChecker {
public:
    TimingChecker(const Organization& org, const Timing& timing);

    // One message per violated constraint of each command, in log order.
    std::vector<std::string> check(const std::vector<IssuedCommand>& log) const;

    // Incremental use, e.g. by a reference controller asking "may this command issue now?".
    void reset();
    // Violations `c` would have after the commands recorded so far; appends messages if `out` is given.
    std::size_t violations(const IssuedCommand& c, std::vector<std::string>* out = nullptr) const;
    void record(const IssuedCommand& c);

private:
    struct Rule {
        const char* name;
        unsigned prev;  // bit set of commands A
        unsigned next;  // bit set of commands B: B issues >= latency ticks after the latest A in scope
        int scope;      // pc, sid, sibling sid, bank group, bank
        int latency;
    };
    struct History {
        std::vector<std::uint64_t> bank_last;  // [bank][kind], kNever if none
        std::vector<std::uint64_t> bg_last;    // [sid * bank_groups + bg][kind]
        std::vector<std::uint64_t> sid_last;   // [sid][kind]
        std::vector<std::uint64_t> pc_last;    // [kind]
        std::vector<int> open_row;             // [bank], -1 closed
        std::uint64_t acts[4] = {0, 0, 0, 0};  // last four ACT ticks (ring)
        int act_count = 0;
        std::uint64_t bus_tick[2] = {0, 0};  // last command per bus: 0 row (or shared), 1 column
        Command bus_cmd[2] = {Command::ACT, Command::ACT};
        bool bus_used[2] = {false, false};
        std::uint64_t last_tick = 0;
        bool any = false;
    };
    void reset(History& h) const;
    std::size_t violations(const History& h, const IssuedCommand& c, std::vector<std::string>* out) const;
    void record(History& h, const IssuedCommand& c) const;

    Organization m_org;
    Timing m_t;
    std::vector<Rule> m_rules;
    History m_history;
};

}  // namespace trnsim::hw::dram
