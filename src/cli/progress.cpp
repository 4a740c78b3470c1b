#include "progress.h"

#include <unistd.h>

#include <cstdio>

#include <fmt/format.h>

namespace trnsim::cli {

namespace {

std::string clock_text(double s) {
    const long t = static_cast<long>(s + 0.5);
    if (t >= 3600) return fmt::format("{}:{:02}:{:02}", t / 3600, t / 60 % 60, t % 60);
    return fmt::format("{}:{:02}", t / 60, t % 60);
}

}  // namespace

Progress::Progress(std::size_t total, std::size_t already, bool quiet)
    : m_total(total),
      m_done(already),
      m_quiet(quiet),
      m_tty(::isatty(STDERR_FILENO) != 0),
      m_start(std::chrono::steady_clock::now()),
      m_last_line(m_start) {}

std::string Progress::text() const {
    const double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - m_start).count();
    const double rate = elapsed > 0 ? static_cast<double>(m_session) / elapsed : 0.0;
    const std::size_t left = m_total - m_done;
    const std::string eta = left == 0  ? "done"
                            : rate > 0 ? "ETA " + clock_text(static_cast<double>(left) / rate)
                                       : "ETA ?";
    std::string bar;
    if (m_tty) {
        const std::size_t width = 24;
        const std::size_t filled = m_total == 0 ? width : m_done * width / m_total;
        bar = "[" + std::string(filled, '#') + std::string(width - filled, '.') + "] ";
    }
    return fmt::format("{}{}/{} points, {} failed, {:.2f} points/s, {} elapsed, {}", bar, m_done, m_total, m_failed,
                       rate, clock_text(elapsed), eta);
}

void Progress::draw(bool force) {
    if (m_quiet) return;
    if (m_tty) {
        std::fprintf(stderr, "\r%s\033[K", text().c_str());
        m_drawn = true;
    } else {
        const auto now = std::chrono::steady_clock::now();
        if (!force && std::chrono::duration<double>(now - m_last_line).count() < 1.0) return;
        m_last_line = now;
        std::fprintf(stderr, "trnsim sweep: %s\n", text().c_str());
    }
    std::fflush(stderr);
}

void Progress::point_done(bool ok) {
    ++m_done;
    ++m_session;
    if (!ok) ++m_failed;
    draw(m_done == m_total);
}

void Progress::tick() {
    if (m_tty) draw(false);
}

void Progress::note(const std::string& line) {
    if (m_quiet) return;
    if (m_tty && m_drawn) std::fprintf(stderr, "\r\033[K");
    std::fprintf(stderr, "trnsim sweep: %s\n", line.c_str());
    if (m_tty && m_drawn) std::fprintf(stderr, "%s", text().c_str());
    std::fflush(stderr);
}

void Progress::finish() {
    if (m_quiet) return;
    if (m_tty) {
        draw(true);
        std::fprintf(stderr, "\n");
    }
}

}  // namespace trnsim::cli
