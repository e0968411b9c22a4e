#include "image_file.hpp"

#include <cerrno>
#include <cstring>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "dfma/errors.hpp"
#include "request_limits.hpp"

namespace dfma::detail {
namespace {

// Closes a descriptor on every path out.
struct Fd {
    int fd;
    ~Fd() {
        if (fd >= 0) ::close(fd);
    }
};

std::string shown(const std::string& path) {
    if (path.size() <= 200) return path;
    return path.substr(0, 120) + "..." + path.substr(path.size() - 60) + " (" + std::to_string(path.size()) + " characters)";
}

}  // namespace

std::string file_kind(unsigned mode) {
    if (S_ISDIR(mode)) return "a folder";
    if (S_ISFIFO(mode)) return "a FIFO (named pipe)";
    if (S_ISCHR(mode)) return "a character device";
    if (S_ISBLK(mode)) return "a block device";
    if (S_ISSOCK(mode)) return "a socket";
    return "not a regular file";
}

std::vector<std::uint8_t> read_image_file(const std::string& path, const Limits& limits) {
    const std::string name = shown(path);
    if (path.find('\0') != std::string::npos)
        throw ImageError(name + ": not a usable file name (embedded null byte)");
    Fd f{::open(path.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC | O_NOCTTY)};
    if (f.fd < 0) {
        if (errno == ENOENT || errno == ENOTDIR) throw ImageError(name + ": no such image file");
        throw ImageError(name + ": cannot open (" + std::strerror(errno) + ")");
    }
    struct stat st {};
    if (::fstat(f.fd, &st) != 0) throw ImageError(name + ": read error (" + std::strerror(errno) + ")");
    if (!S_ISREG(st.st_mode))
        throw ImageError(name + ": " + file_kind(st.st_mode) +
                         ", not a regular file (images are read from regular files only)");
    check_image_bytes(st.st_size, name, limits);
    std::vector<std::uint8_t> data;
    data.reserve(static_cast<std::size_t>(st.st_size));
    std::uint8_t buf[1 << 16];
    for (;;) {  // the file may grow after fstat: refused as soon as it passes the limit
        const ssize_t n = ::read(f.fd, buf, sizeof buf);
        if (n < 0) {
            if (errno == EINTR) continue;
            throw ImageError(name + ": read error (" + std::strerror(errno) + ")");
        }
        if (n == 0) break;
        data.insert(data.end(), buf, buf + n);
        check_image_bytes(static_cast<long long>(data.size()), name, limits);
    }
    return data;
}

}  // namespace dfma::detail
