// HBM pseudo-channel model (dram_timing.h, dram_channel.h, dram_address.h): closed forms for latency and
// bandwidth, the timing checker on legal and illegal logs, write drain, the address map, and exact agreement
// of the event-jumping controller with a naive tick-by-tick FR-FCFS reference that asks the checker whether
// each command is legal.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cstdint>
#include <deque>
#include <limits>
#include <random>
#include <set>
#include <string>
#include <tuple>
#include <vector>

#include "trnsim/hw/dram_address.h"
#include "trnsim/hw/dram_channel.h"
#include "trnsim/hw/dram_timing.h"

using namespace trnsim::hw::dram;

namespace {

constexpr std::uint64_t kForever = std::numeric_limits<std::uint64_t>::max();

// HBM3-6400 of Ramulator 2.1 hbm3.py (memory.md A1.1) in half-CK ticks (tick multiplier 2).
Timing hbm3_6400() {
    const int m = 2;
    Timing t;
    t.BL = 2 * m;
    t.CL = 20 * m;
    t.CWL = 10 * m;
    t.RCDRD = 31 * m;
    t.RCDWR = 15 * m;
    t.RP = 26 * m;
    t.RAS = 45 * m;
    t.RC = 72 * m;
    t.WR = 33 * m;
    t.RTP = 9 * m;
    t.CCDS = 2 * m;
    t.CCDL = 4 * m;
    t.CCDR = 3 * m;
    t.RRDS = 4 * m;
    t.RRDL = 5 * m;
    t.FAW = 24 * m;
    t.WTRS = 7 * m;
    t.WTRL = 10 * m;
    t.RTW = 20 * m;
    t.RFC = 560 * m;  // 16 Gb die, 2 SIDs: 8 Gb per SID -> 350 ns (JESD238 Table 84 as hbm3.py resolves it)
    t.RFCpb = 320 * m;
    t.REFI = 6240 * m;   // 3.9 us
    t.REFIpb = 195 * m;  // 3.9 us / (4 banks x 4 BGs x 2 SIDs) = 121.875 ns
    t.RREFD = 8 * m;     // the preset's value
    t.PPD = 2 * m;
    t.act_bus = 3;  // 1.5 CK
    t.pre_bus = 1;  // 0.5 CK
    t.col_bus = 2;  // 1 CK
    return t;
}

Organization hbm3_16gb_8hi() {
    Organization o;
    o.channels = 16;
    o.pseudo_channels = 2;
    o.sids = 2;
    o.rows = 16384;
    return o;
}

// HBM2-2400 of Ramulator 2.1 hbm2.py (memory.md A1.2), tCK 833 ps, ticks = CK.
Timing hbm2_2400() {
    Timing t;
    t.BL = 2;
    t.CL = 17;
    t.CWL = 6;
    t.RCDRD = 17;
    t.RCDWR = 14;
    t.RP = 17;
    t.RAS = 40;
    t.RC = 57;
    t.WR = 19;
    t.RTP = 6;  // nRTPL
    t.CCDS = 2;
    t.CCDL = 4;
    t.CCDR = 2;  // one SID: not applicable, CCDS
    t.RRDS = 5;  // max(4, ceil(4 ns / tCK))
    t.RRDL = 5;
    t.FAW = 19;  // max(8, ceil(15 ns / tCK))
    t.WTRS = 8;
    t.WTRL = 10;
    t.RTW = t.CL + t.BL + 2 - t.CWL;
    t.RFC = 313;     // 4 Gb: 260 ns
    t.RFCpb = 193;   // <= 8 Gb: 160 ns
    t.REFI = 4681;   // 3.9 us, rounded down
    t.REFIpb = 146;  // 3.9 us / (2 PCs x 4 BGs x 4 banks), as hbm2.py
    t.RREFD = 10;    // max(4, ceil(8 ns / tCK))
    t.PPD = 0;       // no tPPD in HBM2
    t.act_bus = 2;
    t.pre_bus = 1;
    t.col_bus = 1;
    return t;
}

Organization hbm2_4gb() {
    Organization o;
    o.channels = 8;
    o.pseudo_channels = 2;
    o.sids = 1;
    o.rows = 32768;
    return o;
}

struct Part {
    const char* name;
    Organization org;
    Timing t;
};

std::vector<Part> parts() {
    return {{"hbm3-6400", hbm3_16gb_8hi(), hbm3_6400()}, {"hbm2-2400", hbm2_4gb(), hbm2_2400()}};
}

ControllerSpec controller(RefreshMode refresh, PagePolicy page = PagePolicy::open) {
    ControllerSpec s;
    s.refresh = refresh;
    s.page = page;
    return s;
}

Request req(std::uint64_t id, bool write, int sid, int bg, int bank, int row, int column, std::uint64_t arrival) {
    return Request{id, write, sid, bg, bank, row, column, arrival};
}

std::vector<IssuedCommand> only(const std::vector<IssuedCommand>& log, Command c) {
    std::vector<IssuedCommand> out;
    for (const auto& x : log) {
        if (x.cmd == c) out.push_back(x);
    }
    return out;
}

// Runs the channel until `count` requests have completed.
std::vector<Completion> run_to_completion(PseudoChannel& pc, std::size_t count) {
    std::vector<Completion> done;
    while (done.size() < count) {
        const std::uint64_t e = pc.next_event_tick();
        REQUIRE(e != kForever);
        pc.run_until(e + 1, done);
    }
    return done;
}

// Feeds `requests` (each type in list order) into a channel: a request enters its queue at max(arrival, the first
// tick its queue has space). Visits only ticks where something can happen, so the fast channel jumps while the
// reference (whose next_event_tick is now) steps every tick; both see identical enqueue ticks.
template <class Channel>
std::vector<Completion> drive(Channel& ch, const std::vector<Request>& requests) {
    std::vector<Request> by_type[2];
    for (const auto& r : requests) by_type[r.write ? 1 : 0].push_back(r);
    std::size_t next[2] = {0, 0};
    std::vector<Completion> done;
    while (done.size() < requests.size()) {
        const std::uint64_t t = ch.now();
        std::uint64_t arrival = kForever;
        for (int w = 0; w < 2; ++w) {
            auto& list = by_type[w];
            while (next[w] < list.size() && list[next[w]].arrival <= t && ch.can_accept(w == 1)) {
                Request r = list[next[w]++];
                r.arrival = t;
                ch.enqueue(r);
            }
            if (next[w] < list.size() && list[next[w]].arrival > t) arrival = std::min(arrival, list[next[w]].arrival);
        }
        const std::uint64_t e = ch.next_event_tick();
        REQUIRE((e != kForever || arrival != kForever));
        if (arrival <= e)
            ch.run_until(arrival, done);
        else
            ch.run_until(e + 1, done);
    }
    return done;
}

// Random mixed traffic: a few hot rows per bank (hits, misses and conflicts), bursts and gaps.
std::vector<Request> mixed_traffic(const Organization& org, int count, double read_ratio, std::uint64_t seed) {
    std::mt19937_64 rng(seed);
    std::uniform_real_distribution<double> u(0, 1);
    std::vector<Request> out;
    std::uint64_t t = 0;
    for (int i = 0; i < count; ++i) {
        if (u(rng) < 0.3) t += rng() % 40;
        const int sid = static_cast<int>(rng() % static_cast<unsigned>(org.sids));
        const int bg = static_cast<int>(rng() % static_cast<unsigned>(org.bank_groups));
        const int bank = static_cast<int>(rng() % static_cast<unsigned>(org.banks_per_group));
        const int row = static_cast<int>(rng() % 3) * 1000 + (u(rng) < 0.1 ? static_cast<int>(rng() % 500) : 0);
        const int column = static_cast<int>(rng() % static_cast<unsigned>(org.columns));
        out.push_back(req(static_cast<std::uint64_t>(i), u(rng) >= read_ratio, sid, bg, bank, row, column, t));
    }
    return out;
}

// The same controller written naively: every tick, walk the queue oldest first and issue the first command the
// TimingChecker accepts (column bus first, then row bus; refresh first on the row bus).
class ReferenceChannel {
public:
    ReferenceChannel(const Organization& org, const Timing& t, const ControllerSpec& spec)
        : m_org(org), m_t(t), m_spec(spec), m_checker(org, t), m_open(static_cast<std::size_t>(org.banks()), -1) {
        if (spec.refresh == RefreshMode::all_bank) m_interval = static_cast<std::uint64_t>(t.REFI);
        if (spec.refresh == RefreshMode::per_bank) m_interval = static_cast<std::uint64_t>(t.REFIpb);
        m_due = m_interval ? m_interval : kForever;
    }
    std::uint64_t now() const { return m_now; }
    std::uint64_t next_event_tick() const { return m_now; }
    bool can_accept(bool write) const {
        return static_cast<int>(m_queue[write].size()) < (write ? m_spec.write_queue : m_spec.read_queue);
    }
    void enqueue(const Request& r) {
        REQUIRE(r.arrival <= m_now);
        m_queue[r.write].push_back(Entry{r, m_org.bank_index(r.sid, r.bank_group, r.bank), false});
    }
    void run_until(std::uint64_t until, std::vector<Completion>& done) {
        for (; m_now < until; ++m_now) step(m_now);
        std::stable_sort(m_done.begin(), m_done.end(),
                         [](const Completion& a, const Completion& b) { return a.tick < b.tick; });
        auto split =
            std::partition_point(m_done.begin(), m_done.end(), [until](const Completion& c) { return c.tick < until; });
        done.insert(done.end(), m_done.begin(), split);
        m_done.erase(m_done.begin(), split);
    }

    std::vector<IssuedCommand> log;
    std::uint64_t hits = 0, misses = 0, conflicts = 0;

private:
    struct Entry {
        Request r;
        int bank;
        bool classified;
    };

    IssuedCommand command(std::uint64_t t, Command c, int b, int row) const {
        if (b < 0) return IssuedCommand{t, c, -1, -1, -1, -1};
        const int per_sid = m_org.bank_groups * m_org.banks_per_group;
        return IssuedCommand{t, c, b / per_sid, (b % per_sid) / m_org.banks_per_group, b % m_org.banks_per_group, row};
    }
    bool legal(const IssuedCommand& c) const { return m_checker.violations(c) == 0; }
    void issue(const IssuedCommand& c) {
        m_checker.record(c);
        log.push_back(c);
    }
    bool blocked(int b) const { return m_refab > 0 || std::find(m_refpb.begin(), m_refpb.end(), b) != m_refpb.end(); }
    bool queue_hits(int q, int b, int row, const Entry* except) const {
        for (const auto& e : m_queue[q]) {
            if (&e != except && e.bank == b && e.r.row == row) return true;
        }
        return false;
    }

    // Each bank once per round; first in round-robin order from the last target among: idle (no queued
    // request) and precharged banks, else idle banks, else the banks left in the round.
    int refresh_target() {
        const int n = m_org.banks();
        if (static_cast<int>(m_round.size()) == n) m_round.clear();
        auto idle = [&](int b) {
            for (const auto& q : m_queue)
                for (const auto& e : q)
                    if (e.bank == b) return false;
            return true;
        };
        for (int tier = 0; tier < 3; ++tier) {
            for (int i = 0; i < n; ++i) {
                const int b = (m_next_bank + i) % n;
                if (m_round.count(b)) continue;
                if (tier < 2 && !idle(b)) continue;
                if (tier == 0 && m_open[static_cast<std::size_t>(b)] >= 0) continue;
                m_round.insert(b);
                m_next_bank = (b + 1) % n;
                return b;
            }
        }
        FAIL("no refresh target");
        return -1;
    }

    void step(std::uint64_t t) {
        const int reads = static_cast<int>(m_queue[0].size()), writes = static_cast<int>(m_queue[1].size());
        if (!m_write_mode) {
            if (writes >= m_spec.write_high || (reads == 0 && writes > 0)) m_write_mode = true;
        } else if ((writes <= m_spec.write_low && reads > 0) || writes == 0) {
            m_write_mode = false;
        }
        while (m_due <= t) {
            if (m_spec.refresh == RefreshMode::all_bank)
                ++m_refab;
            else
                m_refpb.push_back(refresh_target());
            m_due += m_interval;
        }
        const int q = m_write_mode ? 1 : 0;
        auto& queue = m_queue[q];

        for (std::size_t i = 0; i < queue.size(); ++i) {
            Entry& e = queue[i];
            const int b = e.bank;
            if (blocked(b) || m_open[static_cast<std::size_t>(b)] != e.r.row) continue;
            const bool auto_pre =
                m_spec.page == PagePolicy::closed && !queue_hits(0, b, e.r.row, &e) && !queue_hits(1, b, e.r.row, &e);
            const Command c = q ? (auto_pre ? Command::WRA : Command::WR) : (auto_pre ? Command::RDA : Command::RD);
            const IssuedCommand ic = command(t, c, b, e.r.row);
            if (!legal(ic)) continue;
            issue(ic);
            if (auto_pre) m_open[static_cast<std::size_t>(b)] = -1;
            if (!e.classified) ++hits;
            m_done.push_back(
                Completion{e.r.id, t + static_cast<std::uint64_t>(q ? m_t.CWL + m_t.BL : m_t.CL + m_t.BL)});
            queue.erase(queue.begin() + static_cast<std::ptrdiff_t>(i));
            break;
        }

        if (m_refab > 0 || !m_refpb.empty()) {
            IssuedCommand ic;
            if (m_refab > 0) {
                const bool any_open = std::any_of(m_open.begin(), m_open.end(), [](int r) { return r >= 0; });
                ic = command(t, any_open ? Command::PREA : Command::REFab, -1, -1);
            } else {
                const int b = m_refpb.front();
                const int row = m_open[static_cast<std::size_t>(b)];
                ic = row >= 0 ? command(t, Command::PRE, b, row) : command(t, Command::REFpb, b, -1);
            }
            if (legal(ic)) {
                issue(ic);
                if (ic.cmd == Command::PREA) std::fill(m_open.begin(), m_open.end(), -1);
                if (ic.cmd == Command::REFab) --m_refab;
                if (ic.cmd == Command::PRE) m_open[static_cast<std::size_t>(m_refpb.front())] = -1;
                if (ic.cmd == Command::REFpb) m_refpb.pop_front();
                return;
            }
        }
        for (Entry& e : queue) {
            const int b = e.bank;
            if (blocked(b)) continue;
            const int open = m_open[static_cast<std::size_t>(b)];
            IssuedCommand ic;
            if (open < 0)
                ic = command(t, Command::ACT, b, e.r.row);
            else if (open != e.r.row && !queue_hits(q, b, open, nullptr))
                ic = command(t, Command::PRE, b, open);
            else
                continue;
            if (!legal(ic)) continue;
            issue(ic);
            if (ic.cmd == Command::ACT) {
                m_open[static_cast<std::size_t>(b)] = e.r.row;
                if (!e.classified) ++misses;
            } else {
                m_open[static_cast<std::size_t>(b)] = -1;
                if (!e.classified) ++conflicts;
            }
            e.classified = true;
            break;
        }
    }

    Organization m_org;
    Timing m_t;
    ControllerSpec m_spec;
    TimingChecker m_checker;
    std::vector<int> m_open;
    std::deque<Entry> m_queue[2];
    bool m_write_mode = false;
    std::uint64_t m_now = 0, m_interval = 0, m_due = kForever;
    int m_refab = 0, m_next_bank = 0;
    std::deque<int> m_refpb;
    std::set<int> m_round;  // banks given a REFpb in the current round
    std::vector<Completion> m_done;
};

bool contains(const std::vector<std::string>& messages, const std::string& text) {
    return std::any_of(messages.begin(), messages.end(),
                       [&](const std::string& m) { return m.find(text) != std::string::npos; });
}

std::string joined(const std::vector<std::string>& messages, std::size_t at_most = 1000) {
    std::string s;
    for (std::size_t i = 0; i < messages.size() && i < at_most; ++i) s += messages[i] + "\n";
    return s;
}

IssuedCommand cmd(std::uint64_t tick, Command c, int sid = 0, int bg = 0, int bank = 0, int row = 0) {
    if (is_pc_wide(c)) return IssuedCommand{tick, c, -1, -1, -1, -1};
    return IssuedCommand{tick, c, sid, bg, bank, row};
}

}  // namespace

// ---- 1. unloaded latency --------------------------------------------------------------------------------

TEST_CASE("an unloaded read to a closed bank takes tRCDRD + tCL + tBL, a write tRCDWR + tCWL + tBL", "[dram]") {
    for (const auto& p : parts()) {
        SECTION(p.name) {
            PseudoChannel pc(p.org, p.t, controller(RefreshMode::off));
            std::vector<IssuedCommand> log;
            pc.set_command_log(&log);
            pc.enqueue(req(1, false, 0, 1, 2, 77, 3, 0));
            auto done = run_to_completion(pc, 1);
            CHECK(done[0].tick == static_cast<std::uint64_t>(p.t.RCDRD + p.t.CL + p.t.BL));
            REQUIRE(log.size() == 2);
            CHECK(log[0].cmd == Command::ACT);
            CHECK(log[0].tick == 0);
            CHECK(log[1].cmd == Command::RD);

            const std::uint64_t a = 10000;
            pc.run_until(a, done);
            pc.enqueue(req(2, true, 0, 3, 0, 5, 0, a));
            done = run_to_completion(pc, 1);
            CHECK(done[0].tick - a == static_cast<std::uint64_t>(p.t.RCDWR + p.t.CWL + p.t.BL));
            CHECK(pc.stats().row_misses == 2);
        }
    }
}

TEST_CASE("an unloaded row hit takes tCL + tBL and a row conflict tRP + tRCDRD + tCL + tBL", "[dram]") {
    for (const auto& p : parts()) {
        SECTION(p.name) {
            PseudoChannel pc(p.org, p.t, controller(RefreshMode::off));
            std::vector<Completion> done;
            pc.enqueue(req(1, false, 0, 0, 0, 9, 0, 0));
            run_to_completion(pc, 1);

            std::uint64_t a = 5000;
            pc.run_until(a, done);
            pc.enqueue(req(2, false, 0, 0, 0, 9, 1, a));
            done = run_to_completion(pc, 1);
            CHECK(done[0].tick - a == static_cast<std::uint64_t>(p.t.CL + p.t.BL));

            a = 10000;
            pc.run_until(a, done);
            pc.enqueue(req(3, false, 0, 0, 0, 10, 0, a));
            done = run_to_completion(pc, 1);
            CHECK(done[0].tick - a == static_cast<std::uint64_t>(p.t.RP + p.t.RCDRD + p.t.CL + p.t.BL));
            CHECK(pc.stats().row_hits == 1);
            CHECK(pc.stats().row_misses == 1);
            CHECK(pc.stats().row_conflicts == 1);
            CHECK(pc.stats().latency_max == static_cast<std::uint64_t>(p.t.RP + p.t.RCDRD + p.t.CL + p.t.BL));
        }
    }
}

TEST_CASE("a row conflict right after an activate waits for tRAS (and tRC) before precharging", "[dram]") {
    for (const auto& p : parts()) {
        SECTION(p.name) {
            PseudoChannel pc(p.org, p.t, controller(RefreshMode::off));
            std::vector<IssuedCommand> log;
            pc.set_command_log(&log);
            pc.enqueue(req(1, false, 0, 0, 0, 9, 0, 0));
            pc.enqueue(req(2, false, 0, 0, 0, 10, 0, 0));
            const auto done = run_to_completion(pc, 2);
            // First: ACT 0, RD at tRCDRD. Second: PRE at max(tRAS, RD + tRTP), ACT at max(PRE + tRP, tRC).
            const int rd1 = p.t.RCDRD;
            const int pre = std::max(p.t.RAS, rd1 + p.t.RTP);
            const int act = std::max(pre + p.t.RP, p.t.RC);
            CHECK(done[0].tick == static_cast<std::uint64_t>(rd1 + p.t.CL + p.t.BL));
            CHECK(done[1].tick == static_cast<std::uint64_t>(act + p.t.RCDRD + p.t.CL + p.t.BL));
            REQUIRE(only(log, Command::PRE).size() == 1);
            CHECK(only(log, Command::PRE)[0].tick == static_cast<std::uint64_t>(pre));
        }
    }
}

// ---- 2. bandwidth -------------------------------------------------------------------------------------

TEST_CASE("reads streaming from one open row issue every max(tCCD_L, tBL)", "[dram]") {
    for (const auto& p : parts()) {
        SECTION(p.name) {
            PseudoChannel pc(p.org, p.t, controller(RefreshMode::off));
            std::vector<IssuedCommand> log;
            pc.set_command_log(&log);
            for (int c = 0; c < 32; ++c) pc.enqueue(req(static_cast<std::uint64_t>(c), false, 0, 2, 1, 42, c, 0));
            run_to_completion(pc, 32);
            const auto rds = only(log, Command::RD);
            REQUIRE(rds.size() == 32);
            CHECK(rds[0].tick == static_cast<std::uint64_t>(p.t.RCDRD));
            for (std::size_t i = 1; i < rds.size(); ++i)
                CHECK(rds[i].tick - rds[i - 1].tick == static_cast<std::uint64_t>(std::max(p.t.CCDL, p.t.BL)));
            CHECK(pc.stats().row_hits == 31);
        }
    }
}

TEST_CASE("reads alternating over bank groups keep the data bus fully busy (one burst per max(tCCD_S, tBL))",
          "[dram]") {
    for (const auto& p : parts()) {
        SECTION(p.name) {
            REQUIRE(std::max(p.t.CCDS, p.t.BL) == p.t.BL);  // so the data bus is the limit
            PseudoChannel pc(p.org, p.t, controller(RefreshMode::off));
            std::vector<IssuedCommand> log;
            pc.set_command_log(&log);
            const int per_bank = 16;
            for (int c = 0; c < per_bank; ++c)
                for (int bg = 0; bg < 4; ++bg)
                    pc.enqueue(req(static_cast<std::uint64_t>(c * 4 + bg), false, 0, bg, 0, 3, c, 0));
            run_to_completion(pc, 4 * per_bank);
            const auto rds = only(log, Command::RD);
            REQUIRE(rds.size() == 4 * per_bank);
            // Ramp: ACTs are tRRD_S apart; once the four banks are open, bursts go back to back.
            const std::uint64_t gap = static_cast<std::uint64_t>(std::max(p.t.CCDS, p.t.BL));
            CHECK(rds[0].tick == static_cast<std::uint64_t>(p.t.RCDRD));
            CHECK(rds[4].tick <= static_cast<std::uint64_t>(3 * p.t.RRDS + p.t.RCDRD) + gap);
            for (std::size_t i = 5; i < rds.size(); ++i) CHECK(rds[i].tick - rds[i - 1].tick == gap);
            const double busy = static_cast<double>((rds.size() - 4) * static_cast<std::size_t>(p.t.BL)) /
                                static_cast<double>(rds.back().tick + gap - rds[4].tick);
            CHECK(busy == Approx(1.0));
        }
    }
}

TEST_CASE("refresh-limited streaming bandwidth matches 1 - (refresh stall)/tREFI", "[dram]") {
    // Reads cycle over bank 0 of the four bank groups of SID 0, one open row each, with the read queue kept full:
    // without refresh the data bus is always busy. Each tREFI the controller stops column commands when REFab
    // falls due (tick D, last RD at t_last in [D - tBL, D)), precharges all at t_last + tRTP (>= D), refreshes
    // tRP later, re-activates the four banks tRFC after that (tRRD_S apart) and resumes reading tRCDRD after the
    // first ACT. Idle data bus per refresh:
    //   tRTP + tRP + tRFC + tRCDRD - tBL   (from the end of the last burst to the first new one)
    //   + ramp, 0 <= ramp <= 3 (tRRD_S - max(tCCD_S, tBL)): the bursts of the banks activated later wait at
    //   most that long, and an open bank fills part of the wait (tCCD_L permitting).
    // Counting bursts in whole tREFI windows, the phase of the stream moves the count by at most one burst at
    // each end. So busy = 1 - idle / tREFI, with idle in [base, base + max ramp], +- 2 bursts over the span.
    for (const auto& p : parts()) {
        SECTION(p.name) {
            const Timing& t = p.t;
            const int gap = std::max(t.CCDS, t.BL);
            REQUIRE(gap == t.BL);
            REQUIRE(t.RRDS >= gap);
            PseudoChannel pc(p.org, t, controller(RefreshMode::all_bank));
            std::vector<IssuedCommand> log;
            pc.set_command_log(&log);
            const int windows = 20;
            const std::uint64_t start = static_cast<std::uint64_t>(t.REFI), end = start * (windows + 1);
            std::vector<Completion> done;
            std::uint64_t id = 0;
            while (pc.now() < end + 1000) {
                while (pc.can_accept(false)) {
                    const int bg = static_cast<int>(id % 4), column = static_cast<int>((id / 4) % 32);
                    pc.enqueue(req(id++, false, 0, bg, 0, 0, column, pc.now()));
                }
                pc.run_until(kForever, done, true);
            }
            std::uint64_t bursts = 0;
            for (const auto& c : log) {
                if (c.cmd == Command::RD && c.tick >= start && c.tick < end) ++bursts;
            }
            const double base = t.RTP + t.RP + t.RFC + t.RCDRD - t.BL, ramp = 3.0 * (t.RRDS - gap);
            const double span = static_cast<double>(end - start);
            const double measured = static_cast<double>(bursts) * t.BL / span;
            const double tolerance = 2.0 * t.BL / span;
            INFO("measured busy " << measured << ", idle per refresh " << (1 - measured) * t.REFI << " ticks, base "
                                  << base << ", ramp <= " << ramp);
            CHECK(measured <= 1.0 - base / t.REFI + tolerance);
            CHECK(measured >= 1.0 - (base + ramp) / t.REFI - tolerance);
            CHECK(only(log, Command::REFab).size() >= static_cast<std::size_t>(windows));
            CHECK(TimingChecker(p.org, t).check(log).empty());
        }
    }
}

// ---- 3. activate-limited random traffic ---------------------------------------------------------------

TEST_CASE("random row misses are bounded by tFAW (4 ACTs per window) and tRRD_S", "[dram]") {
    for (const auto& p : parts()) {
        for (const PagePolicy page : {PagePolicy::closed, PagePolicy::open}) {
            SECTION(std::string(p.name) + (page == PagePolicy::closed ? " closed page" : " open page")) {
                PseudoChannel pc(p.org, p.t, controller(RefreshMode::off, page));
                std::vector<IssuedCommand> log;
                pc.set_command_log(&log);
                std::mt19937_64 rng(7);
                std::vector<Completion> done;
                const std::uint64_t warmup = 2000, measured = 20000;
                std::uint64_t id = 0;
                while (done.size() < warmup + measured) {
                    while (pc.can_accept(false)) {
                        const int b = static_cast<int>(rng() % static_cast<unsigned>(p.org.banks()));
                        const int per_sid = p.org.bank_groups * p.org.banks_per_group;
                        pc.enqueue(req(id++, false, b / per_sid, (b % per_sid) / p.org.banks_per_group,
                                       b % p.org.banks_per_group, static_cast<int>(rng() % 16384), 0, pc.now()));
                    }
                    pc.run_until(kForever, done, true);
                }
                const double rate = static_cast<double>(measured) /
                                    static_cast<double>(done[warmup + measured - 1].tick - done[warmup - 1].tick);
                const double faw_bound = 4.0 / p.t.FAW, rrd_bound = 1.0 / p.t.RRDS;
                const double bound = std::min(faw_bound, rrd_bound);
                INFO("requests per tick " << rate << ", tFAW bound " << faw_bound << ", tRRD_S bound " << rrd_bound);
                CHECK(rate <= bound * 1.001);
                CHECK(rate >= bound * 0.97);
                CHECK(pc.stats().row_hits < pc.stats().reads / 100);
                CHECK(TimingChecker(p.org, p.t).check(log).empty());
            }
        }
    }
}

// ---- 4. the timing checker ----------------------------------------------------------------------------

TEST_CASE("long random mixed traffic violates no constraint, for every refresh mode, page policy and part", "[dram]") {
    for (auto p : parts()) {
        for (const bool dual : {true, false}) {
            p.org.dual_command_bus = dual;
            for (const RefreshMode refresh : {RefreshMode::all_bank, RefreshMode::per_bank, RefreshMode::off}) {
                for (const PagePolicy page : {PagePolicy::open, PagePolicy::closed}) {
                    PseudoChannel pc(p.org, p.t, controller(refresh, page));
                    std::vector<IssuedCommand> log;
                    pc.set_command_log(&log);
                    const auto traffic = mixed_traffic(p.org, 20000, 0.6, 11);
                    const auto done = drive(pc, traffic);
                    const auto violations = TimingChecker(p.org, p.t).check(log);
                    INFO(p.name << (dual ? " dual bus" : " single bus") << " refresh " << static_cast<int>(refresh)
                                << " page " << static_cast<int>(page) << "\n"
                                << joined(violations, 5));
                    CHECK(violations.empty());
                    CHECK(done.size() == traffic.size());
                    const auto& s = pc.stats();
                    CHECK(s.reads + s.writes == traffic.size());
                    CHECK(s.row_hits + s.row_misses + s.row_conflicts == traffic.size());
                    if (refresh == RefreshMode::all_bank) CHECK(s.refs_ab > 0);
                    if (refresh == RefreshMode::per_bank) CHECK(s.refs_pb > 0);
                    if (page == PagePolicy::closed) CHECK(s.auto_pres > 0);
                    CHECK(s.active_ticks + s.precharged_ticks == s.ticks);
                }
            }
        }
    }
}

TEST_CASE("a 4-SID HBM3 stack (32Gb 16-high) honours tCCD_R between stack IDs", "[dram]") {
    Organization org = hbm3_16gb_8hi();
    org.sids = 4;
    org.rows = 32768;
    const Timing t = hbm3_6400();
    PseudoChannel pc(org, t, controller(RefreshMode::per_bank));
    std::vector<IssuedCommand> log;
    pc.set_command_log(&log);
    drive(pc, mixed_traffic(org, 20000, 0.8, 5));
    CHECK(TimingChecker(org, t).check(log).empty());
    // Reads of different SIDs do come tCCD_R apart somewhere (the constraint is exercised, not vacuous).
    bool tight = false;
    const auto rds = only(log, Command::RD);
    for (std::size_t i = 1; i < rds.size(); ++i)
        tight |= rds[i].sid != rds[i - 1].sid && rds[i].tick - rds[i - 1].tick == static_cast<std::uint64_t>(t.CCDR);
    CHECK(tight);
}

TEST_CASE("the timing checker names the violated constraint of hand-made illegal logs", "[dram]") {
    const Organization org = hbm3_16gb_8hi();
    const Timing t = hbm3_6400();  // ticks: RCDRD 62, RP 52, RAS 90, RC 144, RTP 18, CWL 20, BL 4, WR 66 ...
    const TimingChecker checker(org, t);
    auto check = [&](const std::vector<IssuedCommand>& log, const std::string& expected) {
        const auto messages = checker.check(log);
        INFO(joined(messages));
        CHECK(contains(messages, expected));
    };
    using C = Command;

    SECTION("bank: activate to read/write, precharge, activate") {
        check({cmd(0, C::ACT, 0, 1, 2, 5), cmd(10, C::RD, 0, 1, 2, 5)},
              "tRCDRD: RD at 10 only 10 after ACT at 0, needs 62 (sid 0 bg 1 bank 2)");
        check({cmd(0, C::ACT, 0, 0, 0, 5), cmd(29, C::WR, 0, 0, 0, 5)},
              "tRCDWR: WR at 29 only 29 after ACT at 0, needs 30");
        check({cmd(0, C::ACT), cmd(89, C::PRE)}, "tRAS: PRE at 89 only 89 after ACT at 0, needs 90");
        check({cmd(0, C::ACT), cmd(100, C::PRE), cmd(151, C::ACT)},
              "tRP: ACT at 151 only 51 after PRE at 100, needs 52");
        check({cmd(0, C::ACT), cmd(90, C::PRE), cmd(143, C::ACT)},
              "tRC: ACT at 143 only 143 after ACT at 0, needs 144");
        check({cmd(0, C::ACT), cmd(100, C::RD), cmd(117, C::PRE)},
              "tRTP: PRE at 117 only 17 after RD at 100, needs 18");
        check({cmd(0, C::ACT), cmd(30, C::WR), cmd(119, C::PRE)}, "tWR: PRE at 119 only 89 after WR at 30, needs 90");
    }
    SECTION("auto-precharge") {
        check({cmd(0, C::ACT), cmd(100, C::RDA), cmd(169, C::ACT)},
              "tRTP+tRP: ACT at 169 only 69 after RDA at 100, needs 70");
        check({cmd(0, C::ACT), cmd(100, C::WRA), cmd(241, C::ACT)},
              "tWR+tRP: ACT at 241 only 141 after WRA at 100, needs 142");
        check({cmd(0, C::ACT), cmd(100, C::RDA), cmd(104, C::RD)}, "state: RD at 104 to a closed bank");
    }
    SECTION("column to column") {
        const auto open2 = std::vector<IssuedCommand>{cmd(0, C::ACT, 0, 0, 0, 1), cmd(10, C::ACT, 0, 0, 1, 1),
                                                      cmd(20, C::ACT, 0, 1, 0, 1), cmd(30, C::ACT, 1, 0, 0, 1)};
        auto with = [&](std::vector<IssuedCommand> tail) {
            auto log = open2;
            log.insert(log.end(), tail.begin(), tail.end());
            return log;
        };
        check(with({cmd(200, C::RD, 0, 0, 0, 1), cmd(207, C::RD, 0, 0, 1, 1)}),
              "tCCD_L: RD at 207 only 7 after RD at 200, needs 8");
        check(with({cmd(200, C::RD, 0, 0, 0, 1), cmd(203, C::RD, 0, 1, 0, 1)}),
              "tCCD_S: RD at 203 only 3 after RD at 200, needs 4");
        check(with({cmd(200, C::RD, 0, 0, 0, 1), cmd(205, C::RD, 1, 0, 0, 1)}),
              "tCCD_R: RD at 205 only 5 after RD at 200, needs 6");
        check(with({cmd(200, C::WR, 0, 0, 0, 1), cmd(203, C::WR, 1, 0, 0, 1)}),
              "tBL (data bus): WR at 203 only 3 after WR at 200, needs 4");
        check(with({cmd(200, C::RD, 0, 0, 0, 1), cmd(239, C::WR, 1, 0, 0, 1)}),
              "tRTW: WR at 239 only 39 after RD at 200, needs 40");
        check(with({cmd(200, C::WR, 0, 0, 0, 1), cmd(237, C::RD, 1, 0, 0, 1)}),
              "tWTR_S: RD at 237 only 37 after WR at 200, needs 38");
        check(with({cmd(200, C::WR, 0, 0, 0, 1), cmd(243, C::RD, 0, 0, 1, 1)}),
              "tWTR_L: RD at 243 only 43 after WR at 200, needs 44");
        check(with({cmd(200, C::RD, 0, 0, 0, 1), cmd(201, C::RD, 1, 0, 0, 1)}),
              "column bus: RD at 201 only 1 after RD at 200");
    }
    SECTION("activate to activate") {
        check({cmd(0, C::ACT, 0, 0, 0), cmd(7, C::ACT, 0, 1, 0)}, "tRRD_S: ACT at 7 only 7 after ACT at 0, needs 8");
        check({cmd(0, C::ACT, 0, 0, 0), cmd(9, C::ACT, 0, 0, 1)}, "tRRD_L: ACT at 9 only 9 after ACT at 0, needs 10");
        check({cmd(0, C::ACT, 0, 0, 0), cmd(8, C::ACT, 0, 1, 0), cmd(16, C::ACT, 0, 2, 0), cmd(24, C::ACT, 0, 3, 0),
               cmd(32, C::ACT, 1, 0, 0)},
              "tFAW: ACT at 32 only 32 after ACT at 0 (5 ACTs in the window), needs 48");
        CHECK(checker
                  .check({cmd(0, C::ACT, 0, 0, 0), cmd(8, C::ACT, 0, 1, 0), cmd(16, C::ACT, 0, 2, 0),
                          cmd(24, C::ACT, 0, 3, 0), cmd(48, C::ACT, 1, 0, 0)})
                  .empty());
        check({cmd(0, C::ACT, 0, 0, 0), cmd(2, C::PRE, 0, 1, 0)}, "state: PRE at 2 to a closed bank");
        check({cmd(0, C::ACT, 0, 0, 0), cmd(100, C::ACT, 1, 0, 0), cmd(101, C::PRE, 0, 0, 0)},
              "row bus: PRE at 101 only 1 after ACT at 100, which occupies the bus for 3");
    }
    SECTION("precharge to precharge") {
        check({cmd(0, C::ACT, 0, 0, 0), cmd(10, C::ACT, 0, 1, 0), cmd(100, C::PRE, 0, 0, 0), cmd(103, C::PRE, 0, 1, 0)},
              "tPPD: PRE at 103 only 3 after PRE at 100, needs 4");
        check({cmd(0, C::ACT, 0, 0, 0), cmd(89, C::PREA)}, "tRAS: PREA at 89 only 89 after ACT at 0, needs 90");
        check({cmd(0, C::ACT, 0, 0, 0), cmd(100, C::RD, 0, 0, 0), cmd(110, C::PREA)},
              "tRTP: PREA at 110 only 10 after RD at 100, needs 18");
    }
    SECTION("refresh") {
        check({cmd(0, C::REFab), cmd(100, C::ACT, 0, 2, 1)}, "tRFC: ACT at 100 only 100 after REFab at 0, needs 1120");
        check({cmd(0, C::REFpb, 0, 2, 1), cmd(100, C::ACT, 0, 2, 1)},
              "tRFCpb: ACT at 100 only 100 after REFpb at 0, needs 640 (sid 0 bg 2 bank 1)");
        check({cmd(0, C::REFpb, 0, 2, 1), cmd(10, C::ACT, 0, 0, 0)},
              "tRREFD: ACT at 10 only 10 after REFpb at 0, needs 16");
        check({cmd(0, C::REFpb, 0, 2, 1), cmd(10, C::REFpb, 0, 0, 0)},
              "tRREFD: REFpb at 10 only 10 after REFpb at 0, needs 16");
        check({cmd(0, C::ACT, 0, 0, 0), cmd(100, C::REFab)}, "state: REFab at 100 with bank 0 open (row 0)");
        check({cmd(0, C::ACT, 0, 0, 0), cmd(100, C::PRE, 0, 0, 0), cmd(120, C::REFab)},
              "tRP: REFab at 120 only 20 after PRE at 100, needs 52");
        check({cmd(0, C::ACT, 0, 1, 0), cmd(100, C::PREA), cmd(120, C::REFpb, 0, 1, 0)},
              "tRP: REFpb at 120 only 20 after PREA at 100, needs 52");
        check({cmd(0, C::ACT, 0, 1, 0), cmd(100, C::REFpb, 0, 1, 0)}, "state: REFpb at 100 to a bank with row 0 open");
        check({cmd(0, C::REFab), cmd(500, C::REFab)}, "tRFC: REFab at 500 only 500 after REFab at 0, needs 1120");
    }
    SECTION("bank state") {
        check({cmd(0, C::RD, 0, 0, 0, 4)}, "state: RD at 0 to a closed bank");
        check({cmd(0, C::ACT, 0, 0, 0, 4), cmd(100, C::WR, 0, 0, 0, 5)}, "state: WR at 100 to row 5 but row 4 is open");
        check({cmd(0, C::ACT, 0, 0, 0, 4), cmd(500, C::ACT, 0, 0, 0, 5)},
              "state: ACT at 500 to a bank with row 4 open");
        check({cmd(5, C::ACT, 0, 0, 0, 4), cmd(4, C::ACT, 1, 0, 0, 4)}, "order: ACT at 4 logged after a command at 5");
        check({cmd(0, C::ACT, 2, 0, 0, 4)}, "address: ACT at 0 names no bank");
    }
}

// ---- 5. write drain -----------------------------------------------------------------------------------

TEST_CASE("writes wait for the high watermark, then drain to the low one, and every request completes once", "[dram]") {
    for (const auto& p : parts()) {
        SECTION(p.name) {
            ControllerSpec spec = controller(RefreshMode::all_bank);
            spec.read_queue = 32;
            spec.write_queue = 32;
            spec.write_high = 20;
            spec.write_low = 6;
            PseudoChannel pc(p.org, p.t, spec);
            std::vector<IssuedCommand> log;
            pc.set_command_log(&log);
            std::mt19937_64 rng(3);
            std::vector<Completion> done;
            std::uint64_t id = 0, next_write = 0;
            const std::uint64_t total = 20000;
            int drains = 0, exits = 0;
            bool mode = false;
            std::size_t seen = 0;
            // The drain mode of a tick is known once its arrivals are in: observe it then, at every tick the
            // channel may act.
            auto observe = [&] {
                const bool now_mode = pc.write_mode();
                // Writes arrive one at a time and leave one per WR, and reads are never missing here: the
                // mode flips exactly at the watermarks.
                if (now_mode && !mode) {
                    ++drains;
                    CHECK(pc.queued(true) == spec.write_high);
                }
                if (!now_mode && mode) {
                    ++exits;
                    CHECK(pc.queued(true) == spec.write_low);
                }
                if (!now_mode) CHECK(pc.queued(true) < spec.write_high);
                mode = now_mode;
            };
            while (id < total) {
                const std::uint64_t t = pc.now();
                auto random_req = [&](bool write) {
                    const int b = static_cast<int>(rng() % static_cast<unsigned>(p.org.banks()));
                    const int per_sid = p.org.bank_groups * p.org.banks_per_group;
                    return req(id++, write, b / per_sid, (b % per_sid) / p.org.banks_per_group,
                               b % p.org.banks_per_group, static_cast<int>(rng() % 4), static_cast<int>(rng() % 32), t);
                };
                while (pc.can_accept(false) && id < total) pc.enqueue(random_req(false));
                if (t >= next_write && pc.can_accept(true) && id < total) {
                    pc.enqueue(random_req(true));
                    next_write = t + 25;
                }
                observe();
                // At most one tick with commands: the next event, or stop at the next write arrival.
                pc.run_until(std::min(pc.next_event_tick() + 1, std::max(next_write, t + 1)), done);
                for (; seen < log.size(); ++seen) {
                    if (is_column(log[seen].cmd)) CHECK(is_write(log[seen].cmd) == mode);
                }
            }
            const std::uint64_t drains_while_mixed = pc.stats().write_drains;
            while (done.size() < total) pc.run_until(pc.next_event_tick() + 1, done);
            CHECK(drains >= 3);
            CHECK(exits >= 2);
            CHECK(drains_while_mixed == static_cast<std::uint64_t>(drains));
            std::vector<std::uint64_t> ids;
            for (const auto& c : done) ids.push_back(c.id);
            std::sort(ids.begin(), ids.end());
            CHECK(ids.size() == total);
            CHECK(std::adjacent_find(ids.begin(), ids.end()) == ids.end());
            CHECK(ids.front() == 0);
            CHECK(ids.back() == total - 1);
            for (std::size_t i = 1; i < done.size(); ++i) CHECK(done[i].tick >= done[i - 1].tick);
            CHECK(TimingChecker(p.org, p.t).check(log).empty());
        }
    }
}

// ---- exactness: the event-jumping controller against a tick-by-tick reference -------------------------

TEST_CASE("the controller issues exactly the commands of a tick-by-tick FR-FCFS reference", "[dram]") {
    for (auto p : parts()) {
        // Shorter refresh intervals, so that many refreshes meet the traffic.
        p.t.REFI = 3000;
        p.t.REFIpb = std::max(p.t.RREFD + 1, p.t.REFIpb / 2);
        for (const bool dual : {true, false}) {
            p.org.dual_command_bus = dual;
            for (const RefreshMode refresh : {RefreshMode::all_bank, RefreshMode::per_bank, RefreshMode::off}) {
                for (const PagePolicy page : {PagePolicy::open, PagePolicy::closed}) {
                    ControllerSpec spec = controller(refresh, page);
                    spec.read_queue = 12;
                    spec.write_queue = 10;
                    spec.write_high = 7;
                    spec.write_low = 2;
                    const auto traffic = mixed_traffic(p.org, 1500, 0.65, 21);
                    PseudoChannel fast(p.org, p.t, spec);
                    std::vector<IssuedCommand> log;
                    fast.set_command_log(&log);
                    ReferenceChannel reference(p.org, p.t, spec);
                    const auto fast_done = drive(fast, traffic);
                    const auto ref_done = drive(reference, traffic);
                    INFO(p.name << (dual ? " dual bus" : " single bus") << " refresh " << static_cast<int>(refresh)
                                << " page " << static_cast<int>(page));
                    const std::size_t common = std::min(log.size(), reference.log.size());
                    std::size_t mismatch = common;
                    for (std::size_t i = 0; i < common && mismatch == common; ++i) {
                        const auto& a = log[i];
                        const auto& b = reference.log[i];
                        if (std::tie(a.tick, a.cmd, a.sid, a.bank_group, a.bank, a.row) !=
                            std::tie(b.tick, b.cmd, b.sid, b.bank_group, b.bank, b.row))
                            mismatch = i;
                    }
                    if (mismatch < common)
                        FAIL("command " << mismatch << ": fast " << to_string(log[mismatch].cmd) << " at "
                                        << log[mismatch].tick << " bank " << log[mismatch].sid << "/"
                                        << log[mismatch].bank_group << "/" << log[mismatch].bank << ", reference "
                                        << to_string(reference.log[mismatch].cmd) << " at "
                                        << reference.log[mismatch].tick << " bank " << reference.log[mismatch].sid
                                        << "/" << reference.log[mismatch].bank_group << "/"
                                        << reference.log[mismatch].bank);
                    REQUIRE(log.size() == reference.log.size());
                    REQUIRE(fast_done.size() == ref_done.size());
                    for (std::size_t i = 0; i < fast_done.size(); ++i) {
                        CHECK(fast_done[i].id == ref_done[i].id);
                        CHECK(fast_done[i].tick == ref_done[i].tick);
                    }
                    CHECK(fast.stats().row_hits == reference.hits);
                    CHECK(fast.stats().row_misses == reference.misses);
                    CHECK(fast.stats().row_conflicts == reference.conflicts);
                }
            }
        }
    }
}

TEST_CASE("run_until gives the same timeline whether called per event, per slot or once", "[dram]") {
    const auto p = parts()[0];
    const ControllerSpec spec = controller(RefreshMode::per_bank);
    auto traffic = mixed_traffic(p.org, 60, 0.5, 9);  // fits the queues: all enqueued up front, future arrivals
    auto run = [&](int mode) {
        PseudoChannel pc(p.org, p.t, spec);
        std::vector<IssuedCommand> log;
        pc.set_command_log(&log);
        for (const auto& r : traffic) pc.enqueue(r);
        std::vector<Completion> done;
        if (mode == 0) {
            while (done.size() < traffic.size()) pc.run_until(pc.next_event_tick() + 1, done);
        } else if (mode == 1) {
            while (done.size() < traffic.size()) {
                if (!pc.run_until(50000, done, true)) break;
            }
        } else {
            pc.run_until(50000, done);
        }
        CHECK(done.size() == traffic.size());
        return log;
    };
    const auto a = run(0), b = run(1), c = run(2);  // b and c go on refreshing after the last request
    REQUIRE(b.size() >= a.size());
    REQUIRE(c.size() >= a.size());
    for (std::size_t i = 0; i < a.size(); ++i) {
        CHECK(a[i].tick == b[i].tick);
        CHECK(a[i].tick == c[i].tick);
        CHECK(a[i].cmd == c[i].cmd);
    }
}

TEST_CASE("an idle channel with refresh off reports no next event, with refresh on the next refresh", "[dram]") {
    const auto p = parts()[0];
    PseudoChannel off(p.org, p.t, controller(RefreshMode::off));
    CHECK(off.next_event_tick() == kForever);
    PseudoChannel on(p.org, p.t, controller(RefreshMode::all_bank));
    CHECK(on.next_event_tick() == static_cast<std::uint64_t>(p.t.REFI));
    std::vector<Completion> done;
    on.run_until(10 * static_cast<std::uint64_t>(p.t.REFI) + 1, done);
    CHECK(on.stats().refs_ab == 10);
    CHECK(on.stats().refresh_ticks == 10 * static_cast<std::uint64_t>(p.t.RFC));
    CHECK(on.stats().active_ticks == 0);
    CHECK(on.next_event_tick() == 11 * static_cast<std::uint64_t>(p.t.REFI));
}

TEST_CASE("bad organizations, timings and controller specs are rejected", "[dram]") {
    Organization org = hbm3_16gb_8hi();
    org.sids = 8;
    org.bank_groups = 4;
    org.banks_per_group = 4;
    CHECK_THROWS_AS(PseudoChannel(org, hbm3_6400(), ControllerSpec{}), std::invalid_argument);
    Timing t = hbm3_6400();
    t.RFC = t.REFI;
    CHECK_THROWS_AS(PseudoChannel(hbm3_16gb_8hi(), t, ControllerSpec{}), std::invalid_argument);
    t = hbm3_6400();
    t.REFI = 0;  // no refresh timing: fine with refresh off only
    CHECK_THROWS_AS(PseudoChannel(hbm3_16gb_8hi(), t, ControllerSpec{}), std::invalid_argument);
    CHECK_NOTHROW(PseudoChannel(hbm3_16gb_8hi(), t, controller(RefreshMode::off)));
    ControllerSpec spec;
    spec.write_low = spec.write_high;
    CHECK_THROWS_AS(PseudoChannel(hbm3_16gb_8hi(), hbm3_6400(), spec), std::invalid_argument);
    PseudoChannel pc(hbm3_16gb_8hi(), hbm3_6400(), ControllerSpec{});
    CHECK_THROWS_AS(pc.enqueue(req(1, false, 2, 0, 0, 0, 0, 0)), std::out_of_range);
}

// ---- 6. address map -----------------------------------------------------------------------------------

TEST_CASE("address decoding is a bijection onto the organization, in both schemes", "[dram]") {
    Organization small;
    small.channels = 2;
    small.pseudo_channels = 2;
    small.sids = 2;
    small.bank_groups = 2;
    small.banks_per_group = 2;
    small.rows = 8;
    small.columns = 4;
    small.burst_bytes = 32;
    Organization odd = small;  // not powers of two
    odd.channels = 3;
    odd.bank_groups = 3;
    odd.rows = 5;
    for (const auto& [org, stacks] : {std::pair<Organization, int>{small, 2}, std::pair<Organization, int>{odd, 3}}) {
        for (const MapScheme scheme : {MapScheme::ro_ba_bg_ra_co_ch, MapScheme::xor_hashed}) {
            const AddressMap map(org, stacks, scheme);
            const std::uint64_t bursts = static_cast<std::uint64_t>(stacks) * org.channels * org.pseudo_channels *
                                         org.sids * org.bank_groups * org.banks_per_group * org.rows * org.columns;
            REQUIRE(map.capacity_bytes() == bursts * 32);
            std::set<std::tuple<int, int, int, int, int, int, int, int>> seen;
            for (std::uint64_t a = 0; a < map.capacity_bytes(); a += 32) {
                const Decoded d = map.decode(a + 5);
                CHECK((d.stack >= 0 && d.stack < stacks));
                CHECK((d.channel >= 0 && d.channel < org.channels));
                CHECK((d.pseudo_channel >= 0 && d.pseudo_channel < org.pseudo_channels));
                CHECK((d.sid >= 0 && d.sid < org.sids));
                CHECK((d.bank_group >= 0 && d.bank_group < org.bank_groups));
                CHECK((d.bank >= 0 && d.bank < org.banks_per_group));
                CHECK((d.row >= 0 && d.row < org.rows));
                CHECK((d.column >= 0 && d.column < org.columns));
                seen.insert({d.stack, d.channel, d.pseudo_channel, d.sid, d.bank_group, d.bank, d.row, d.column});
                CHECK(map.encode(d) == a);
            }
            CHECK(seen.size() == bursts);
            CHECK_THROWS_AS(map.decode(map.capacity_bytes()), std::out_of_range);
        }
    }
}

TEST_CASE("consecutive bursts go to consecutive channels first, then pseudo-channels", "[dram]") {
    const Organization org = hbm3_16gb_8hi();
    for (const MapScheme scheme : {MapScheme::ro_ba_bg_ra_co_ch, MapScheme::xor_hashed}) {
        const AddressMap map(org, 4, scheme);
        CHECK(map.capacity_bytes() == 4ull * 16 * 1024 * 1024 * 1024);  // 16 GiB per 16Gb 8-high stack
        for (std::uint64_t base : {0ull, 1234567ull * 32 * 1024, 7ull << 30}) {
            std::set<int> channels;
            const Decoded first = map.decode(base);
            for (int i = 0; i < org.channels; ++i) {
                const Decoded d = map.decode(base + static_cast<std::uint64_t>(i) * 32);
                channels.insert(d.channel);
                CHECK(d.pseudo_channel == first.pseudo_channel);
                CHECK(d.stack == first.stack);
                CHECK(d.row == first.row);
                CHECK(d.column == first.column);
            }
            CHECK(channels.size() == static_cast<std::size_t>(org.channels));
            CHECK(map.decode(base + 16 * 32).pseudo_channel != first.pseudo_channel);
        }
    }
    // Plain scheme: after channels and pseudo-channels come stacks, then the columns of one row.
    const AddressMap plain(org, 4, MapScheme::ro_ba_bg_ra_co_ch);
    const Decoded d = plain.decode(32ull * 16 * 2 * 4);
    CHECK(d.channel == 0);
    CHECK(d.stack == 0);
    CHECK(d.column == 1);
    // Hashed scheme: the same bank and column of successive rows land in different banks and channels.
    const AddressMap hashed(org, 1, MapScheme::xor_hashed);
    const std::uint64_t row_stride = 32ull * 16 * 2 * 32 * 2 * 4 * 4;
    std::set<std::pair<int, int>> places;
    for (int r = 0; r < 16; ++r) {
        const Decoded x = hashed.decode(static_cast<std::uint64_t>(r) * row_stride);
        CHECK(x.row == r);
        places.insert({x.channel, x.bank_group * 4 + x.bank});
    }
    CHECK(places.size() == 16);
}

TEST_CASE("requests are admitted in enqueue order, whether enqueued for a future tick or for now", "[dram]") {
    const auto p = parts()[0];
    PseudoChannel pc(p.org, p.t, controller(RefreshMode::off));
    std::vector<Completion> done;
    // A is enqueued ahead of its arrival; the channel then reaches that tick (not yet decided) and B is
    // enqueued for it too: same bank and row, so FR-FCFS serves the older first, and that is A.
    pc.enqueue(req(1, false, 0, 0, 0, 7, 0, 10));
    pc.run_until(10, done);
    REQUIRE(pc.now() == 10);
    pc.enqueue(req(2, false, 0, 0, 0, 7, 1, 10));
    while (done.size() < 2) pc.run_until(pc.next_event_tick() + 1, done);
    CHECK(done[0].id == 1);
    CHECK(done[1].id == 2);
    CHECK(done[0].tick < done[1].tick);
}

TEST_CASE("run_until_taking_issued reports what run_until and take_issued report, in the same order", "[dram]") {
    for (const auto& p : parts()) {
        const ControllerSpec spec = controller(RefreshMode::per_bank);
        const auto traffic = mixed_traffic(p.org, 100, 0.6, 5);  // fits the queues: all enqueued up front
        PseudoChannel a(p.org, p.t, spec), b(p.org, p.t, spec);
        for (const auto& r : traffic) {
            a.enqueue(r);
            b.enqueue(r);
        }
        std::vector<Completion> done_a, done_b;
        while (done_a.size() < traffic.size()) {
            const std::uint64_t until = a.next_event_tick() + 1;
            a.run_until(until, done_a);
            a.take_issued(done_a);
            b.run_until_taking_issued(until, done_b);
            REQUIRE(a.now() == b.now());
            REQUIRE(done_a.size() == done_b.size());
        }
        for (std::size_t i = 0; i < done_a.size(); ++i) {
            CHECK(done_a[i].id == done_b[i].id);
            CHECK(done_a[i].tick == done_b[i].tick);
        }
    }
}

TEST_CASE("run_until_taking_issued keeps completion order when one call issues reads and writes", "[dram]") {
    // Long steps, so that a call spans write drains; and a read-to-write turnaround shorter than any part's, so
    // that a write issued after a read completes before it (with the parts' timings the data bus keeps them in
    // issue order).
    for (const auto& p : parts()) {
        const ControllerSpec spec = controller(RefreshMode::all_bank);
        const auto traffic = mixed_traffic(p.org, 120, 0.5, 11);
        Timing t = p.t;
        t.RTW = 1;
        PseudoChannel a(p.org, t, spec), b(p.org, t, spec);
        for (const auto& r : traffic) {
            a.enqueue(r);
            b.enqueue(r);
        }
        std::vector<Completion> done_a, done_b;
        for (std::uint64_t until = 400; done_a.size() < traffic.size(); until += 400) {
            a.run_until(until, done_a);
            a.take_issued(done_a);
            b.run_until_taking_issued(until, done_b);
            REQUIRE(done_a.size() == done_b.size());
        }
        for (std::size_t i = 0; i < done_a.size(); ++i) {
            CHECK(done_a[i].id == done_b[i].id);
            CHECK(done_a[i].tick == done_b[i].tick);
        }
    }
}

TEST_CASE("the row-candidate scan gives the same least key in its scalar and AVX-512 versions", "[dram]") {
    // Keys as the controller packs them: ticks within 2^20 of now, ages (seq << 6 | bank) within 2^34 of the base.
    std::mt19937_64 rng(7);
    std::uint64_t x[64], age[64];
    for (int trial = 0; trial < 2000; ++trial) {
        const std::uint64_t now = rng() >> 20, common = now + rng() % 64, age_base = (rng() >> 30) << 6;
        for (int b = 0; b < 64; ++b) {
            x[b] = now - 1000 + rng() % 3000;
            age[b] = age_base + ((rng() % (std::uint64_t{1} << 34)) << 6 | static_cast<std::uint64_t>(b));
        }
        // Sparse, dense, empty and single-lane masks.
        std::uint64_t mask = rng();
        if (trial % 4 == 1) mask &= rng() & rng();
        if (trial % 4 == 2) mask = trial % 8 == 2 ? 0 : std::uint64_t{1} << (rng() % 64);
        std::uint64_t expected = ~std::uint64_t{0};
        for (int b = 0; b < 64; ++b) {
            if (!(mask >> b & 1)) continue;
            const std::uint64_t tick = std::max(x[b], common) - now;
            expected = std::min(expected, tick << 40 | (age[b] - age_base));
        }
        REQUIRE(scan_class_scalar(mask, common, now, age_base, x, age) == expected);
        if (scan_class_avx512_supported()) REQUIRE(scan_class_avx512(mask, common, now, age_base, x, age) == expected);
    }
}
