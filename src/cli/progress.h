#pragma once
// The progress of a sweep on stderr: done/total, failures, rate and ETA. Redrawn in place (\r) on a terminal;
// on anything else plain lines, at most one a second (and the last).

#include <chrono>
#include <cstddef>
#include <string>

namespace trnsim::cli {

class Progress {
public:
    // `total` points, of which `already` were done before this run (resume); `quiet`: print nothing.
    Progress(std::size_t total, std::size_t already, bool quiet);

    void point_done(bool ok);
    void tick();                         // redraw (a terminal) so that the rate and ETA stay current
    void note(const std::string& line);  // a message line (a failed point), kept above the bar
    void finish();                       // the final state, then a newline on a terminal

private:
    std::string text() const;
    void draw(bool force);

    std::size_t m_total, m_done, m_failed = 0, m_session = 0;
    bool m_quiet, m_tty;
    std::chrono::steady_clock::time_point m_start, m_last_line;
    bool m_drawn = false;
};

}  // namespace trnsim::cli
