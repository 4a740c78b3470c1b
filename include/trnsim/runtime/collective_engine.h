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
// Busy periods (docs/adr/0006): traffic that starts on idle chips and links claims them (its footprint: the
// chips it reads and writes, the links its routes cross) until they are idle again; traffic touching a busy
// period's footprint joins it, and traffic touching two merges them. Independent traffic (another pipeline
// stage's tensor-parallel group) forms its own period. A chip restarts its DMA ring and reducer assignments
// when a period claims it, so a period evolves the same way whenever it starts: every model on its path is
// shift-invariant.
//
// Memo (enable_memo): the engine records the periods it simulates (what started, when, when each part
// finished, relative to the start, and what they added to their links' and endpoints' counters); a later
// period that starts with the same traffic in the same caller's context, on a footprint that is free, is
// replayed from the record instead of simulated, as long as whatever joins it matches the record (same
// traffic, same time, same order relative to the completions). Anything else is a conflict: the engine stops
// the simulation and names the record (memo_conflict_key), and the caller simulates again without it.

#include <array>
#include <cstdint>
#include <deque>
#include <functional>
#include <list>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <unordered_map>
#include <vector>

#include "trnsim/core/numeric.h"
#include "trnsim/hw/topology.h"
#include "trnsim/hw/wakeup.h"
#include "trnsim/runtime/collective.h"

namespace trnsim::runtime {

// What an algorithm sees of a group of ranks (members in the given order become ranks 0 .. size-1);
// `rank_chip[r]` is the chip of cluster rank r. Needs the topology's facts only, not a built cluster.
RankLayout rank_layout(const hw::ClusterSpec& spec, const hw::Topology& topo, const std::vector<int>& rank_chip,
                       const std::vector<int>& group);

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
    void start(const Schedule& schedule, const RankLayout& layout, Done on_done);
    // Several collectives started together at the current time; `context` names the caller's state that
    // decides what will start next (only the memo reads it: records are kept per context), and `source`
    // the caller's part that starts them (a pipeline stage; -1: several or unknown), whose context it is.
    struct BatchItem {
        const Schedule* schedule = nullptr;  // schedule and layout outlive the simulation
        const RankLayout* layout = nullptr;
        Done on_done;
    };
    // `apart`: the caller's word that until this batch's traffic is over, whatever joins it keeps to the
    // groups it runs on (no collective spans two of them, no other source sends into them); the memo then
    // simulates only one of several alike groups (docs/adr/0009). A wrong word only causes a conflict.
    void start_batch(std::vector<BatchItem> items, const std::string& context = {}, int source = -1,
                     bool apart = false);
    // From now on the kernels running on `chips` take `load` of their DMA engines' and memory's time
    // (hw::Cluster::set_kernel_load), until `until_fs` at the latest (the caller's word: the load changes
    // again by then; k_never: unknown). A change inside a busy period is one of its events. The memo replays
    // a record only where the running kernels end when the record has them end.
    static constexpr std::uint64_t k_never = ~std::uint64_t{0};
    void set_kernel_load(const std::vector<int>& chips, const hw::KernelLoad& load, std::uint64_t until_fs = k_never);
    // How far the kernels of `chip` have fallen behind so far for the DMA engine and memory time collectives
    // took from them (hw::KernelLag, counters that only grow), as of its last set_kernel_load: the caller
    // reads it there to time its kernels. The same with the memo on or off: in a replayed period it comes
    // from the record's load change, in a mirrored one from the chip's leader.
    const hw::KernelLag& kernel_lag(int chip) const { return m_lag.at(static_cast<std::size_t>(chip)); }
    // In `skip` (enable_memo): no period is mirrored (docs/adr/0009).
    static inline const std::string k_no_mirror = "mirror|*";
    // Records and replays busy periods from now on, except those of the records named in `skip` (a record's
    // key; "mirror|" + a key: do not mirror that period; k_no_mirror: mirror none). Requires
    // that schedules and layouts are not freed and reused during the simulation (their addresses identify them).
    void enable_memo(std::set<std::string> skip = {});
    // The caller's bound on traffic from outside a period's context: `quiet(chips, source)` is a time (fs)
    // before which no source but `source` can start point-to-point sends (batches of one-transfer
    // schedules) touching those chips. Where the bound decides a replay's fate, the period is simulated
    // instead (a conflict would cost the simulation up to it): a record without other sources' sends is not
    // replayed if one could start before its end, nor one with such a send if none can start by then.
    using Quiet = std::function<std::uint64_t(const std::vector<int>& chips, int source)>;
    void set_quiet(Quiet quiet) { m_quiet = std::move(quiet); }
    // Something joined a replayed period that its record does not know: the simulation was stopped and is
    // not valid; the record's key (or "mirror|" + the keys of mirrored periods, separated by tabs).
    bool memo_conflict() const { return m_conflict; }
    const std::string& memo_conflict_key() const { return m_conflict_key; }
    struct MemoStats {
        std::uint64_t simulated = 0;  // busy periods simulated (recorded, merged or not memoized)
        std::uint64_t recorded = 0;   // of them, recorded
        std::uint64_t merged = 0;     // periods merged into another (traffic touching both)
        std::uint64_t replayed = 0;   // busy periods replayed from a record
        std::uint64_t mirrored = 0;   // simulated with alike parts simulated once (docs/adr/0009)
        std::uint64_t followers = 0;  // in them, the parts not simulated (each the image of another)
    };
    const MemoStats& memo_stats() const { return m_memo_stats; }
    // The records as text, and adding records from such a text: for another simulation of the same cluster
    // config (records hold chip and link indices and are meaningless elsewhere).
    std::string export_memo() const;
    void import_memo(const std::string& text);
    // A busy period that ended (simulated or replayed): when it ran, and the busy time it added to each of
    // its links and to each of its chips' DMA rings (all rings together). For a timeline (the training
    // trace); with a listener, plain periods keep the counters they start from too.
    struct PeriodUse {
        std::uint64_t start_fs = 0, end_fs = 0;
        std::vector<std::pair<std::size_t, std::uint64_t>> link_busy;  // link index (Topology::links), fs
        std::vector<std::pair<int, std::uint64_t>> dma_busy;           // chip, fs
    };
    void on_period_end(std::function<void(const PeriodUse&)> listener) { m_on_period_end = std::move(listener); }
    // Every endpoint's assignment of streams (messages to send or to reduce) to DMA rings restarts:
    // called between independent runs so a result does not depend on history.
    void restart();

    hw::Cluster& cluster() { return m_cluster; }

private:
    struct Job {
        const Schedule* schedule = nullptr;
        const RankLayout* layout = nullptr;
        CollectiveEngine* engine = nullptr;
        std::vector<hw::Message> messages;
        std::vector<int> waiting;  // deps not yet arrived, per transfer
        // The transfers that wait for transfer i: dependents[dependent_first[i] .. dependent_first[i + 1]).
        std::vector<int> dependent_first;
        std::vector<int> dependents;
        std::size_t done = 0;
        std::uint64_t last_fs = 0;
        Done on_done;
        std::list<std::unique_ptr<Job>>::iterator self;  // in m_jobs
    };
    void submit(Job* job, std::size_t i);
    // Transfer i of the job is done at `fs` (its last byte in memory; a join, when its dependencies are):
    // the transfers waiting for it go, and the job ends with its last.
    static void complete(Job* job, std::size_t i, std::uint64_t fs);
    // Starts the item's transfers as part of period `period` (its `item`-th item).
    void launch(const BatchItem& item, int period, std::size_t index);

    // What traffic touches: the links its routes cross and its chips (sorted), and, for a batch, the memo's
    // name for its transfers (chips, bytes, reduction, streams, dependencies, hops). Not the dtype: a
    // collective's timing does not depend on it (the DMA engines reduce bytes, docs/hw/interconnect.md).
    // Names are relative to a frame: a base node and one of the topology's node maps
    // (hw::Topology::node_maps: a torus's translations and reflections). An item's transfers name chips
    // and hops from its lowest node, and a batch (or a period) names each item's node from the base node,
    // everything seen through the map. A period's frame is that of the traffic that opened it: its lowest
    // node, and the map under which its transfers read first (compared chip by chip, then hop by hop), so
    // that traffic that is the image of other traffic under a node shift and a map has the same name.
    // Records hold chips and links in their period's frame and replay in any frame. With several maps
    // the names spell out every hop: equal names then mean that one traffic's routes are the other's,
    // mapped, whether or not the map carries routes onto routes in general.
    struct Traffic {
        const Schedule* schedule = nullptr;
        const RankLayout* layout = nullptr;
        int node = 0;  // its lowest node
        std::vector<std::size_t> links;
        std::vector<int> chips;
        // Once needed: every transfer's chips as numbered from its lowest node's chip 0, and its hops but
        // the last (node from its lowest, role), from hop_first[i] to hop_first[i + 1].
        std::vector<int> ends;
        std::vector<std::pair<int, std::size_t>> hops;
        std::vector<std::size_t> hop_first;
        std::array<std::uint64_t, 2> shape{};  // hash of what every map leaves alone (bytes, reductions, deps)
        std::vector<std::pair<std::size_t, std::string>> names;  // per node map, once needed
    };
    void prepare(Traffic& t);
    struct Footprint {
        std::vector<Traffic*> parts;  // per item: its traffic
        std::vector<std::size_t> links;
        std::vector<int> chips;
        void add(const Footprint& o);
    };
    Footprint footprint(const BatchItem& item);
    // The parts of `fp` named in the frame (base node, node map).
    std::string name(const Footprint& fp, int base, std::size_t map);
    const std::string& traffic_name(Traffic& t, std::size_t map);
    // The node map under which `fp`'s transfers read first (cached per composition).
    std::size_t frame_map(const Footprint& fp);
    // A chip and a link as a frame names them, and back.
    int frame_chip(int base, std::size_t map, int chip) const;
    int frame_unchip(int base, std::size_t map, int rel) const;
    std::pair<int, std::size_t> frame_link(int base, std::size_t map, std::size_t link) const;

    struct Event {
        bool start = false;
        std::uint64_t rel_fs = 0;  // after the period's start
        std::string key;           // start: what started
        std::size_t item = 0;      // start: its first item; completion: the item (numbered in start order)
        std::size_t count = 0;     // start: items
        bool foreign = false;      // start: point-to-point sends from another source than the period's
        // A load change: the kernel lag its chips (numbered in the order of its key) took since the period
        // began, for those where it changed since their last load change in the period (or from none), in
        // runs of consecutive chips with the same lag (alike chips of a group take alike lags).
        struct LagRun {
            std::size_t first = 0, count = 0;
            hw::KernelLag lag;
        };
        std::vector<LagRun> lags;
    };
    struct Record {
        std::vector<Event> events;                       // the first is the period's start
        std::vector<std::pair<int, std::size_t>> links;  // the footprint at the end: node from the base, role
        std::vector<int> chips;                          // from the base node's chip 0
        std::vector<hw::LinkStats> link_stats;           // counters added, per link
        std::vector<hw::ChipStats> chip_stats;           // endpoint, memory, fabric, per chip
        std::size_t first_links = 0, first_chips = 0;    // how many of them it held when it began
        // Once needed: per chip (as the frame names it) the time of its first load change (load_changes).
        mutable std::map<int, std::uint64_t> first_load;
        mutable bool first_load_known = false;
    };
    enum class Mode { pending, plain, recording, replaying };
    // A recording period whose traffic falls into parts on disjoint chips and links, some of them images of
    // another (their leader) under a map of chips and links that preserves every route and link spec: only
    // the leaders are simulated; a follower's items finish when their leader's do, and at the end its links
    // and chips get its leader's counters (docs/adr/0009).
    struct Mirror {
        struct Part {
            std::size_t leader = 0;                   // the part it mirrors; itself for a leader
            std::map<int, int> chip;                  // a follower's map: leader chip -> its own
            std::map<std::size_t, std::size_t> link;  // leader link -> its own
            std::set<int> chip_images;                // the maps' values (the maps are one-to-one)
            std::set<std::size_t> link_images;
        };
        std::vector<Part> parts;
        std::map<int, std::size_t> chip_part;
        std::map<std::size_t, std::size_t> link_part;
        // Per leader item: the items that follow it (their numbers) and their callbacks.
        std::map<std::size_t, std::vector<std::pair<std::size_t, Done>>> followers;
    };
    struct Period {
        int id = 0;
        int base = 0;         // the node its names count from: the lowest of the traffic that opened it
        std::size_t map = 0;  // and the node map they see through (frame_map; chosen when it closes)
        int source = -2;      // the source of the traffic that opened it (-1: several or unknown; -2: none yet)
        Mode mode = Mode::plain;
        std::vector<std::size_t> links;  // claimed
        std::vector<int> chips;
        std::uint64_t active = 0;  // started and not finished (simulated)
        std::size_t items = 0;     // numbered so far
        // pending: what starts at this time, until a delta cycle passes without more
        std::vector<BatchItem> pending;
        std::string context;
        struct Load {
            std::size_t at = 0;  // in context
            std::vector<int> chips;
            hw::KernelLoad load;
        };
        std::vector<Load> loads;  // load changes among them, named when it closes
        std::uint64_t added_delta = 0;
        // recording and replaying
        std::string key;
        std::uint64_t start_fs = 0;
        Record record;
        std::map<std::size_t, hw::LinkStats> links0;  // counters when claimed
        std::vector<std::size_t> first_links;         // recording: what it held when it began
        std::vector<int> first_chips;
        std::map<int, hw::ChipStats> chips0;  // recording: when claimed; replaying: before the record's were added
        std::map<int, hw::KernelLag> lags;    // recording, replaying: a chip's lag at its last load change in it
        const Record* replay = nullptr;
        Footprint replay_at;                             // the record's whole footprint, where it is replayed
        std::map<std::size_t, std::size_t> replay_link;  // replaying: a link's index in the record
        std::map<int, std::size_t> replay_chip;          // replaying: a chip's index in the record
        std::size_t next = 0;                            // in replay->events
        std::vector<Done> on_done;
        int wake = -1;          // index in m_wakes
        bool replayed = false;  // begun as a replay
        bool apart = true;      // pending: every batch that opened it said `apart`
        std::unique_ptr<Mirror> mirror;
    };
    Period* period(int id);
    Period& new_period(Mode mode);
    // The period `fp` belongs to after claiming what of it is free: a new one, the one it touches, or the
    // merge of those it touches (nullptr: a conflict).
    Period* claim(const Footprint& fp);
    void take(Period& p, const Footprint& fp);
    void close_pending();
    // A started item of a period finished (simulated); returns the callbacks of the items that follow it
    // (a mirrored period), to be called after its own.
    std::vector<Done> finish_item(int period, std::size_t item, std::uint64_t fs);
    // Sorts `items` (numbered from `first` in the period) into the mirror's parts, opening the mirror when
    // `p` has none: the indices of the leaders' items, to be simulated; false when they do not mirror (when
    // opening: when no part mirrors another).
    bool mirror_items(Period& p, std::vector<BatchItem>& items, std::size_t first, std::vector<std::size_t>& leaders);
    // Whether `b` is the image of leader item `a` under `part`'s maps, extending them.
    bool mirrors(const BatchItem& a, const BatchItem& b, Mirror::Part& part);
    // The leader's counters since they were claimed, added to every other part (a mirrored period's end).
    void mirror_counters(Period& p);
    void maybe_end(Period& p);
    // What the period's links and DMA rings were busy for, for the listener.
    PeriodUse use(const Period& p) const;
    // `sender`: the source of point-to-point sends (-1: other traffic, or unknown).
    bool starts(Period& p, const std::string& key, std::vector<Done*> done, int sender);
    static bool sends(const std::vector<BatchItem>& items);
    void begin_record(Period& p);
    // `placed`: the record's chips and links where it replays (place()); `at`: those it holds from the start.
    void begin_replay(Period& p, const Record& r, const Footprint& placed, const Footprint& at);
    // A replaying period claims `parts` as its traffic reaches them: the record's counters of those it did not
    // hold yet are added then.
    void replay_take(Period& p, const Footprint& parts);
    // Where record `r`'s links and chips lie in the frame (base node, node map), in the record's order
    // (appended to `placed`); false when they do not fit in the cluster.
    bool place(const Record& r, int base, std::size_t map, Footprint& placed) const;
    // Of those, the ones it held when it began (or all of them), sorted as a period holds them.
    static Footprint first_parts(const Record& r, const Footprint& placed, bool all = false);
    void arm(Period& p);
    void deliver(int period);
    void conflict(const Period& p, const std::string& why);
    // Mirrored periods met traffic or a load change that does not mirror: named "mirror|" + their keys,
    // separated by tabs.
    void mirror_conflict(const std::vector<const Period*>& periods, const std::string& why);
    bool idle(const Period& p) const;
    // The loads of the kernels running on `chips` (those not idle), named in `p`'s frame.
    std::string running_loads(const Period& p, const std::vector<int>& chips) const;
    // A load change on `chips` as an event of `p` (chips named in its frame, sorted; `chips` sorted the same).
    std::string load_key(const Period& p, std::vector<int>& chips, const hw::KernelLoad& load) const;
    // The kernel lag of chip `c` of `p` as simulated: a mirror's follower has its leader's since they began.
    hw::KernelLag live_lag(const Period& p, int c) const;
    // After the load change on `chips` (sorted as load_key sorts them) has been an event of `p`: their lag
    // now, recorded, or taken from the record being replayed.
    void lag_at_load(Period& p, const std::vector<int>& chips);
    // Whether the kernels running on `chips` (where `p`, in its frame, would replay `r` from now on) end when
    // `r` has their chips' load change first (or after its end, where it has none): else the replay would
    // meet a conflict.
    bool kernels_end_as_recorded(const Period& p, const Record& r, const std::vector<int>& chips) const;

    bool m_memo_on = false;
    bool m_conflict = false;
    std::string m_conflict_key;
    std::set<std::string> m_skip;
    Quiet m_quiet;
    MemoStats m_memo_stats;
    std::map<std::string, Record> m_memo;
    std::map<std::pair<const Schedule*, const RankLayout*>, Traffic> m_traffic;
    std::function<void(const PeriodUse&)> m_on_period_end;
    std::vector<hw::Topology::NodeMap> m_maps, m_inverse;             // the topology's node maps and their inverses
    std::map<std::vector<const Traffic*>, std::size_t> m_frame_maps;  // frame_map's answers
    std::unordered_map<const hw::PacketSink*, std::size_t> m_link_index;
    std::map<int, std::unique_ptr<Period>> m_periods;
    std::map<int, int> m_merged_into;
    int m_next_period = 0;
    std::vector<int> m_link_owner, m_chip_owner;  // period id or -1
    std::vector<std::uint64_t> m_kernel_until;    // per chip: set_kernel_load's until_fs
    std::vector<hw::KernelLag> m_lag;             // per chip: kernel_lag
    std::deque<hw::Wakeup> m_wakes;               // never freed: the wake-up queue may hold them
    std::vector<int> m_wake_period;               // per wake: the period it serves, or -1 (free)
    sc_core::sc_event m_close_event;

    hw::Cluster& m_cluster;
    std::vector<int> m_rank_chip;
    // Running jobs; a finished one is freed by a method process after the callbacks of its last message
    // have returned (they belong to the job).
    std::list<std::unique_ptr<Job>> m_jobs;
    std::vector<std::list<std::unique_ptr<Job>>::iterator> m_finished;
    sc_core::sc_event m_reap_event;
};

}  // namespace trnsim::runtime
