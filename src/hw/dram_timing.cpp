#include "trnsim/hw/dram_timing.h"

#include <algorithm>
#include <limits>
#include <stdexcept>

namespace trnsim::hw::dram {

namespace {

constexpr std::uint64_t kNever = std::numeric_limits<std::uint64_t>::max();

namespace Scope {
enum : int { pc, sid, sibling_sid, bank_group, bank };
}

constexpr unsigned bit(Command c) {
    return 1u << static_cast<unsigned>(c);
}
constexpr unsigned kRead = bit(Command::RD) | bit(Command::RDA);
constexpr unsigned kWrite = bit(Command::WR) | bit(Command::WRA);
constexpr unsigned kCas = kRead | kWrite;
constexpr unsigned kPre = bit(Command::PRE) | bit(Command::PREA);
constexpr unsigned kAll = (1u << kCommandKinds) - 1;

// The constraint table. Ramulator 2.1 HBM3 (memory.md A1.1) first, then what refresh and PREA legality imply.
template <class Rule>
std::vector<Rule> rules(const Timing& t) {
    const int wr_to_pre = t.CWL + t.BL + t.WR;
    const auto ACT = bit(Command::ACT), PRE = bit(Command::PRE), PREA = bit(Command::PREA), RDA = bit(Command::RDA),
               WRA = bit(Command::WRA), REFab = bit(Command::REFab), REFpb = bit(Command::REFpb);
    return {
        // Per pseudo-channel.
        {"tBL (data bus)", kRead, kRead, Scope::pc, t.BL},
        {"tBL (data bus)", kWrite, kWrite, Scope::pc, t.BL},
        {"tRTW", kRead, kWrite, Scope::pc, t.RTW},
        {"tWTR_S", kWrite, kRead, Scope::pc, t.CWL + t.BL + t.WTRS},
        {"tRRD_S", ACT, ACT, Scope::pc, t.RRDS},
        {"tRAS", ACT, PREA, Scope::pc, t.RAS},
        {"tRP", PREA, ACT | REFab | REFpb, Scope::pc, t.RP},
        {"tPPD", kPre, kPre, Scope::pc, t.PPD},
        {"tRFC", REFab, kAll, Scope::pc, t.RFC},
        {"tRREFD", REFpb, REFpb | ACT, Scope::pc, t.RREFD},
        // PREA closes every bank: each bank's read-to-precharge and write recovery apply.
        {"tRTP", kRead, PREA, Scope::pc, t.RTP},
        {"tWR", kWrite, PREA, Scope::pc, wr_to_pre},
        // REFab needs every bank precharged and idle.
        {"tRP", PRE, REFab, Scope::pc, t.RP},
        {"tRC", ACT, REFab, Scope::pc, t.RC},
        {"tRTP+tRP", RDA, REFab, Scope::pc, t.RTP + t.RP},
        {"tWR+tRP", WRA, REFab, Scope::pc, wr_to_pre + t.RP},
        {"tRFCpb", REFpb, REFab, Scope::pc, t.RFCpb},
        // Same SID; sibling SIDs of the same PC.
        {"tCCD_S", kCas, kCas, Scope::sid, t.CCDS},
        {"tCCD_R", kRead, kRead, Scope::sibling_sid, t.CCDR},
        // Same bank group.
        {"tCCD_L", kCas, kCas, Scope::bank_group, t.CCDL},
        {"tWTR_L", kWrite, kRead, Scope::bank_group, t.CWL + t.BL + t.WTRL},
        {"tRRD_L", ACT, ACT, Scope::bank_group, t.RRDL},
        // Same bank (REFpb, like ACT, needs the bank precharged and idle).
        {"tRC", ACT, ACT | REFpb, Scope::bank, t.RC},
        {"tRCDRD", ACT, kRead, Scope::bank, t.RCDRD},
        {"tRCDWR", ACT, kWrite, Scope::bank, t.RCDWR},
        {"tRAS", ACT, PRE, Scope::bank, t.RAS},
        {"tRP", PRE, ACT | REFpb, Scope::bank, t.RP},
        {"tRTP", kRead, PRE, Scope::bank, t.RTP},
        {"tWR", kWrite, PRE, Scope::bank, wr_to_pre},
        {"tRTP+tRP", RDA, ACT | REFpb, Scope::bank, t.RTP + t.RP},
        {"tWR+tRP", WRA, ACT | REFpb, Scope::bank, wr_to_pre + t.RP},
        {"tRFCpb", REFpb, ACT | REFpb, Scope::bank, t.RFCpb},
    };
}

int bus_of(const Organization& org, Command c) {
    return org.dual_command_bus && is_column(c) ? 1 : 0;
}

int occupancy(const Timing& t, Command c) {
    if (is_column(c)) return t.col_bus;
    return c == Command::ACT ? t.act_bus : t.pre_bus;
}

std::string where(const IssuedCommand& c) {
    if (is_pc_wide(c.cmd)) return "";
    return " (sid " + std::to_string(c.sid) + " bg " + std::to_string(c.bank_group) + " bank " +
           std::to_string(c.bank) + ")";
}

std::string at(Command c, std::uint64_t tick) {
    return std::string(to_string(c)) + " at " + std::to_string(tick);
}

void require(bool ok, const char* what) {
    if (!ok) throw std::invalid_argument(what);
}

}  // namespace

const char* to_string(Command c) {
    switch (c) {
        case Command::ACT: return "ACT";
        case Command::PRE: return "PRE";
        case Command::PREA: return "PREA";
        case Command::RD: return "RD";
        case Command::WR: return "WR";
        case Command::RDA: return "RDA";
        case Command::WRA: return "WRA";
        case Command::REFab: return "REFab";
        case Command::REFpb: return "REFpb";
    }
    return "?";
}

void Organization::validate() const {
    require(channels >= 1, "dram organization: channels must be >= 1");
    require(pseudo_channels >= 1, "dram organization: pseudo_channels must be >= 1");
    require(sids >= 1 && sids <= 8, "dram organization: sids must be in [1, 8]");
    require(bank_groups >= 1, "dram organization: bank_groups must be >= 1");
    require(banks_per_group >= 1, "dram organization: banks_per_group must be >= 1");
    require(banks() <= 64,
            "dram organization: at most 64 banks per pseudo-channel (sids * bank_groups * banks_per_group)");
    require(rows >= 1, "dram organization: rows must be >= 1");
    require(columns >= 1, "dram organization: columns must be >= 1");
    require(burst_bytes >= 1, "dram organization: burst_bytes must be >= 1");
}

void Timing::validate() const {
    const std::pair<const char*, int> values[] = {
        {"BL", BL},           {"CL", CL},           {"CWL", CWL},        {"RCDRD", RCDRD}, {"RCDWR", RCDWR},
        {"RP", RP},           {"RAS", RAS},         {"RC", RC},          {"WR", WR},       {"RTP", RTP},
        {"CCDS", CCDS},       {"CCDL", CCDL},       {"CCDR", CCDR},      {"RRDS", RRDS},   {"RRDL", RRDL},
        {"FAW", FAW},         {"WTRS", WTRS},       {"WTRL", WTRL},      {"RTW", RTW},     {"RFC", RFC},
        {"RFCpb", RFCpb},     {"REFI", REFI},       {"REFIpb", REFIpb},  {"RREFD", RREFD}, {"PPD", PPD},
        {"act_bus", act_bus}, {"pre_bus", pre_bus}, {"col_bus", col_bus}};
    for (const auto& [name, v] : values) {
        if (v < 0 || v >= (1 << 20))
            throw std::invalid_argument(std::string("dram timing: ") + name + " must be in [0, 2^20) ticks");
    }
    require(BL >= 1, "dram timing: BL must be >= 1");
    require(act_bus >= 1 && pre_bus >= 1 && col_bus >= 1, "dram timing: command bus occupancies must be >= 1");
    require(REFI == 0 || REFI > RFC, "dram timing: REFI must exceed RFC");
    require(REFIpb == 0 || REFIpb > RREFD, "dram timing: REFIpb must exceed RREFD");
}

TimingChecker::TimingChecker(const Organization& org, const Timing& timing)
    : m_org(org), m_t(timing), m_rules(rules<Rule>(timing)) {
    m_org.validate();
    m_t.validate();
    reset(m_history);
}

void TimingChecker::reset() {
    reset(m_history);
}

void TimingChecker::reset(History& h) const {
    const int banks = m_org.banks();
    h = History{};
    h.bank_last.assign(static_cast<std::size_t>(banks) * kCommandKinds, kNever);
    h.bg_last.assign(static_cast<std::size_t>(m_org.sids * m_org.bank_groups) * kCommandKinds, kNever);
    h.sid_last.assign(static_cast<std::size_t>(m_org.sids) * kCommandKinds, kNever);
    h.pc_last.assign(kCommandKinds, kNever);
    h.open_row.assign(static_cast<std::size_t>(banks), -1);
}

std::size_t TimingChecker::violations(const IssuedCommand& c, std::vector<std::string>* out) const {
    return violations(m_history, c, out);
}

void TimingChecker::record(const IssuedCommand& c) {
    record(m_history, c);
}

std::vector<std::string> TimingChecker::check(const std::vector<IssuedCommand>& log) const {
    History h;
    reset(h);
    std::vector<std::string> messages;
    for (const auto& c : log) {
        violations(h, c, &messages);
        record(h, c);
    }
    return messages;
}

std::size_t TimingChecker::violations(const History& h, const IssuedCommand& c, std::vector<std::string>* out) const {
    std::size_t count = 0;
    auto report = [&](std::string message) {
        ++count;
        if (out) out->push_back(std::move(message));
    };
    const bool wide = is_pc_wide(c.cmd);
    if (!wide && (c.sid < 0 || c.sid >= m_org.sids || c.bank_group < 0 || c.bank_group >= m_org.bank_groups ||
                  c.bank < 0 || c.bank >= m_org.banks_per_group)) {
        report("address: " + at(c.cmd, c.tick) + " names no bank" + where(c));
        return count;
    }
    if (h.any && c.tick < h.last_tick) {
        report("order: " + at(c.cmd, c.tick) + " logged after a command at " + std::to_string(h.last_tick));
    }
    const int b = wide ? -1 : m_org.bank_index(c.sid, c.bank_group, c.bank);
    const int g = wide ? -1 : c.sid * m_org.bank_groups + c.bank_group;

    // Bank state.
    switch (c.cmd) {
        case Command::ACT:
            if (h.open_row[b] >= 0)
                report("state: " + at(c.cmd, c.tick) + " to a bank with row " + std::to_string(h.open_row[b]) +
                       " open" + where(c));
            break;
        case Command::RD:
        case Command::WR:
        case Command::RDA:
        case Command::WRA:
            if (h.open_row[b] < 0)
                report("state: " + at(c.cmd, c.tick) + " to a closed bank" + where(c));
            else if (h.open_row[b] != c.row)
                report("state: " + at(c.cmd, c.tick) + " to row " + std::to_string(c.row) + " but row " +
                       std::to_string(h.open_row[b]) + " is open" + where(c));
            break;
        case Command::PRE:
            if (h.open_row[b] < 0) report("state: " + at(c.cmd, c.tick) + " to a closed bank" + where(c));
            break;
        case Command::REFpb:
            if (h.open_row[b] >= 0)
                report("state: " + at(c.cmd, c.tick) + " to a bank with row " + std::to_string(h.open_row[b]) +
                       " open" + where(c));
            break;
        case Command::REFab:
            for (int i = 0; i < m_org.banks(); ++i) {
                if (h.open_row[i] >= 0) {
                    report("state: " + at(c.cmd, c.tick) + " with bank " + std::to_string(i) + " open (row " +
                           std::to_string(h.open_row[i]) + ")");
                    break;
                }
            }
            break;
        case Command::PREA: break;
    }

    // Timing rules: the latest A in scope decides.
    const unsigned me = bit(c.cmd);
    for (const auto& r : m_rules) {
        if (!(r.next & me)) continue;
        if (wide && r.scope != Scope::pc) continue;
        std::uint64_t latest = kNever;
        Command latest_cmd = Command::ACT;
        for (int k = 0; k < kCommandKinds; ++k) {
            if (!(r.prev & (1u << k))) continue;
            auto consider = [&](std::uint64_t t) {
                if (t != kNever && (latest == kNever || t > latest)) {
                    latest = t;
                    latest_cmd = static_cast<Command>(k);
                }
            };
            switch (r.scope) {
                case Scope::pc: consider(h.pc_last[k]); break;
                case Scope::sid: consider(h.sid_last[c.sid * kCommandKinds + k]); break;
                case Scope::sibling_sid:
                    for (int s = 0; s < m_org.sids; ++s) {
                        if (s != c.sid) consider(h.sid_last[s * kCommandKinds + k]);
                    }
                    break;
                case Scope::bank_group: consider(h.bg_last[g * kCommandKinds + k]); break;
                case Scope::bank: consider(h.bank_last[b * kCommandKinds + k]); break;
            }
        }
        if (latest == kNever || latest > c.tick) continue;
        const std::uint64_t gap = c.tick - latest;
        if (gap < static_cast<std::uint64_t>(r.latency)) {
            report(std::string(r.name) + ": " + at(c.cmd, c.tick) + " only " + std::to_string(gap) + " after " +
                   at(latest_cmd, latest) + ", needs " + std::to_string(r.latency) + where(c));
        }
    }

    // Four-activate window.
    if (c.cmd == Command::ACT && h.act_count >= 4) {
        const std::uint64_t fourth = h.acts[h.act_count % 4];  // oldest of the last four
        if (c.tick >= fourth && c.tick - fourth < static_cast<std::uint64_t>(m_t.FAW)) {
            report("tFAW: " + at(c.cmd, c.tick) + " only " + std::to_string(c.tick - fourth) + " after " +
                   at(Command::ACT, fourth) + " (5 ACTs in the window), needs " + std::to_string(m_t.FAW) + where(c));
        }
    }

    // Command bus occupancy.
    const int bus = bus_of(m_org, c.cmd);
    if (h.bus_used[bus]) {
        const std::uint64_t prev = h.bus_tick[bus];
        const int occ = occupancy(m_t, h.bus_cmd[bus]);
        if (c.tick >= prev && c.tick - prev < static_cast<std::uint64_t>(occ)) {
            report(std::string(bus == 1 ? "column" : (m_org.dual_command_bus ? "row" : "command")) +
                   " bus: " + at(c.cmd, c.tick) + " only " + std::to_string(c.tick - prev) + " after " +
                   at(h.bus_cmd[bus], prev) + ", which occupies the bus for " + std::to_string(occ) + where(c));
        }
    }
    return count;
}

void TimingChecker::record(History& h, const IssuedCommand& c) const {
    const int k = static_cast<int>(c.cmd);
    h.any = true;
    h.last_tick = std::max(h.last_tick, c.tick);
    h.pc_last[k] = c.tick;
    const int bus = bus_of(m_org, c.cmd);
    h.bus_used[bus] = true;
    h.bus_tick[bus] = c.tick;
    h.bus_cmd[bus] = c.cmd;
    if (c.cmd == Command::ACT) {
        h.acts[h.act_count % 4] = c.tick;
        ++h.act_count;
    }
    if (is_pc_wide(c.cmd)) {
        if (c.cmd == Command::PREA) std::fill(h.open_row.begin(), h.open_row.end(), -1);
        return;
    }
    if (c.sid < 0 || c.sid >= m_org.sids || c.bank_group < 0 || c.bank_group >= m_org.bank_groups || c.bank < 0 ||
        c.bank >= m_org.banks_per_group)
        return;
    const int b = m_org.bank_index(c.sid, c.bank_group, c.bank);
    const int g = c.sid * m_org.bank_groups + c.bank_group;
    h.bank_last[b * kCommandKinds + k] = c.tick;
    h.bg_last[g * kCommandKinds + k] = c.tick;
    h.sid_last[c.sid * kCommandKinds + k] = c.tick;
    switch (c.cmd) {
        case Command::ACT: h.open_row[b] = c.row; break;
        case Command::PRE:
        case Command::RDA:
        case Command::WRA: h.open_row[b] = -1; break;
        default: break;
    }
}

}  // namespace trnsim::hw::dram
