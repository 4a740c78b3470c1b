#pragma once
// Runs collectives and point-to-point transfers on a built cluster, inside a simulation: any number at a
// time, started whenever a caller likes (the collective runner's batches, the training-step scheduler's
// ranks), sharing links, DMA rings and memories. Each collective is planned by an algorithm of the family
// (collective.h) over a group of ranks and executed as its transfers, each started when the transfers it
// depends on have arrived.
//
// Ranks are numbered along the cluster's ring order: each node's Hamiltonian order, node after node,
// `ranks_per_chip` consecutive ranks per chip; so consecutive ranks are neighbours or on one chip.
//
// Memo (enable_memo, docs/adr/0006): traffic that starts on an idle network evolves the same way whenever
// it starts, as every model on its path is shift-invariant, until the network is idle again (a busy period).
// The engine records each busy period it simulates: the collectives (and sends) started in it, when, and
// when each finished, relative to its start, and what it added to every link's and endpoint's counters.
// Traffic that starts on an idle network assigns DMA rings afresh (restart()). A later busy period that
// starts with the same collectives, in the same caller's context, is replayed from the record instead of simulated, as
// long as everything started during it matches the record (same traffic, same time, same order relative to the
// completions). If anything deviates, the replay cannot be trusted: the engine flags a conflict and stops the
// simulation, and the caller simulates again without the memo.

#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "trnsim/core/numeric.h"
#include "trnsim/hw/topology.h"
#include "trnsim/hw/wakeup.h"
#include "trnsim/runtime/collective.h"

namespace trnsim::runtime {

class CollectiveEngine {
public:
    using Done = std::function<void(std::uint64_t fs)>;

    explicit CollectiveEngine(hw::Cluster& cluster);
    CollectiveEngine(const CollectiveEngine&) = delete;
    CollectiveEngine& operator=(const CollectiveEngine&) = delete;

    int ranks() const { return static_cast<int>(m_rank_chip.size()); }
    int chip_of_rank(int rank) const { return m_rank_chip.at(static_cast<std::size_t>(rank)); }
    // The ranks 0 .. n-1 of the ring order (what `trnsim collective --ranks n` uses).
    std::vector<int> first_ranks(int n) const;
    // What an algorithm sees of a group (its members in the given order become ranks 0 .. size-1).
    RankLayout layout(const std::vector<int>& group) const;

    // Starts `schedule` (planned over `layout`) at the current time; `on_done` when its last transfer has
    // arrived (reduced), with that time.
    void start(const Schedule& schedule, const RankLayout& layout, DType dtype, Done on_done);
    // Several collectives started together at the current time; `context` names the caller's state that
    // decides what will start next (only the memo reads it: records are kept per context).
    struct BatchItem {
        const Schedule* schedule = nullptr;  // schedule and layout outlive the simulation
        const RankLayout* layout = nullptr;
        DType dtype = DType::bf16;
        Done on_done;
    };
    void start_batch(std::vector<BatchItem> items, const std::string& context = {});
    // A point-to-point transfer between two ranks at the current time.
    void send(int src_rank, int dst_rank, std::uint64_t bytes, Done on_done);
    // Replays recorded batches from now on. Requires that schedules and layouts are not freed and reused
    // during the simulation (their addresses identify them).
    void enable_memo();
    // Something started while a replayed batch was running: the simulation was stopped and is not valid.
    bool memo_conflict() const { return m_conflict; }
    struct MemoStats {
        std::uint64_t recorded = 0;  // busy periods simulated and recorded
        std::uint64_t replayed = 0;  // busy periods replayed from a record
    };
    const MemoStats& memo_stats() const { return m_memo_stats; }
    // The records as text, and adding records from such a text: for another simulation of the same cluster
    // config (records hold chip and link indices and are meaningless elsewhere).
    std::string export_memo() const;
    void import_memo(const std::string& text);
    // Message ids (which pick a DMA ring and the arbitration order) restart from 0, and so does every
    // endpoint's ring assignment: called between independent runs so a result does not depend on history.
    void restart();

    hw::Cluster& cluster() { return m_cluster; }

private:
    struct Job {
        const Schedule* schedule = nullptr;
        const RankLayout* layout = nullptr;
        std::size_t elem_bytes = 4;
        std::vector<hw::Message> messages;
        std::vector<int> waiting;                  // deps not yet arrived, per transfer
        std::vector<std::vector<int>> dependents;  // per transfer
        std::size_t done = 0;
        std::uint64_t last_fs = 0;
        Done on_done;
    };
    void submit(Job* job, std::size_t i);
    Job* launch(const BatchItem& item);

    // Memo.
    struct Event {
        bool start = false;
        std::uint64_t rel_fs = 0;  // after the busy period's start
        std::string key;           // start: what started
        std::size_t item = 0;      // start: its first item; completion: the item (numbered in start order)
        std::size_t count = 0;     // start: items
    };
    struct Record {
        std::vector<Event> events;                                 // the first is the start of the busy period
        std::uint64_t messages = 0;                                // message ids used
        std::vector<std::pair<std::size_t, hw::LinkStats>> links;  // counters added, by link index
        std::vector<std::pair<int, hw::EndpointStats>> endpoints;  // by chip
        std::vector<int> next_ring;                                // per chip, at the end
    };
    bool network_idle(std::uint64_t now) const;
    std::string batch_key(const std::vector<BatchItem>& items);
    void close_pending();
    void flush_pending();
    // What starts: during a recording, wraps `done` callbacks to record their completion; during a replay,
    // matches the record (or flags a conflict) and takes the callbacks. True when the traffic is to be
    // simulated.
    bool starts(const std::string& key, std::vector<Done*> done);
    void begin_record(std::uint64_t now);
    void record_done(std::size_t item, std::uint64_t fs);
    void finish_record();
    void begin_replay(const Record& r, std::uint64_t now);
    void arm_replay();
    void deliver_replayed();
    void conflict();

    bool m_memo_on = false;
    bool m_conflict = false;
    MemoStats m_memo_stats;
    std::map<std::string, Record> m_memo;
    std::map<std::pair<const Schedule*, const RankLayout*>, std::string> m_fingerprints;
    std::uint64_t m_active = 0;  // collectives and sends started and not finished
    struct Recording {
        bool on = false;
        std::string key;
        std::uint64_t start_fs = 0, first_id = 0;
        std::size_t items = 0;
        Record record;
        std::vector<hw::LinkStats> links0;
        std::vector<hw::EndpointStats> endpoints0;
    } m_rec;
    struct Replaying {
        std::uint64_t start_fs = 0;
        const Record* record = nullptr;
        std::size_t next = 0;  // in record->events
        std::vector<Done> on_done;
    } m_replay;
    std::unique_ptr<hw::Wakeup> m_replay_wake;
    struct Pending {
        bool open = false;
        std::vector<BatchItem> items;
        std::string context;
        std::uint64_t added_delta = 0;
    } m_pending;
    sc_core::sc_event m_close_event;

    hw::Cluster& m_cluster;
    std::vector<int> m_rank_chip;
    std::vector<std::unique_ptr<Job>> m_jobs;  // alive until the simulation ends (messages are referenced)
    std::deque<hw::Message> m_p2p;             // point-to-point messages, stable addresses
    std::uint64_t m_next_id = 0;
};

}  // namespace trnsim::runtime
