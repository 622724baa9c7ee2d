// Crash-safe file writing: data goes to a temp file in the same directory, is fsync'ed, then
// renamed over the destination, so a reader never sees a half-written file and a previous good
// file survives any interruption.
#pragma once

#include <functional>
#include <string>
#include <string_view>

namespace rad {

// Calls write(fd) on a temp file next to `path`, then fsyncs and renames it to `path`.
// `write` must write everything through the given file descriptor (e.g. with write_all).
void write_file_atomic(const std::string& path, const std::function<void(int fd)>& write);

void write_text_atomic(const std::string& path, std::string_view text);

// Writes all bytes or throws rad::Error naming `what_path`.
void write_all(int fd, const void* data, size_t size, const std::string& what_path);

// Reads a whole (small) file, or throws rad::Error naming it.
std::string read_text_file(const std::string& path);

// Creates the directory (and parents) or throws, naming it.
void ensure_directory(const std::string& path);

}  // namespace rad
