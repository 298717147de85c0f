#include "idx.hpp"

#include <zlib.h>

#include <algorithm>
#include <array>
#include <cstdio>
#include <filesystem>
#include <memory>

namespace fmnist {
namespace {

[[noreturn]] void fail(const std::string& path, const std::string& what) {
  throw IdxError(path + ": " + what);
}

// A gzFile that closes itself; gzread passes uncompressed files through unchanged.
class GzReader {
 public:
  explicit GzReader(const std::string& path) : path_(path) {
    // gzopen on a missing file only says "failed"; name the real cause.
    std::error_code ec;
    if (!std::filesystem::is_regular_file(path, ec)) fail(path, "file not found");
    file_ = gzopen(path.c_str(), "rb");
    if (file_ == nullptr) fail(path, "cannot open the file");
  }
  ~GzReader() {
    if (file_ != nullptr) gzclose(file_);
  }
  GzReader(const GzReader&) = delete;
  GzReader& operator=(const GzReader&) = delete;

  /// Reads up to `bytes` bytes; returns how many arrived (fewer at the end of the data).
  /// A damaged or cut-off compressed stream is reported as truncated with zlib's reason.
  std::size_t read(void* dst, std::size_t bytes) {
    auto* out = static_cast<unsigned char*>(dst);
    std::size_t done = 0;
    while (done < bytes) {
      const auto chunk = static_cast<unsigned>(std::min<std::size_t>(bytes - done, 1u << 30));
      const int got = gzread(file_, out + done, chunk);
      if (got <= 0) {
        // 0 is the end of the data; zlib records why it ended ("unexpected end of file" for a
        // cut-off gzip stream, whose last bytes it still hands out).
        int code = Z_OK;
        const char* msg = gzerror(file_, &code);
        if (got < 0 || code != Z_OK) {
          std::string why = msg != nullptr ? msg : "unknown error";
          if (why.rfind(path_ + ": ", 0) == 0) why.erase(0, path_.size() + 2);  // zlib adds it
          fail(path_, "truncated or corrupt compressed data (zlib: " + why + ")");
        }
        break;
      }
      done += static_cast<std::size_t>(got);
    }
    return done;
  }

  /// After the data: a cut-off gzip stream makes gzread report an error only here, when zlib
  /// looks for the stream's trailer, and extra bytes mean the header's dimensions are wrong.
  void expect_end(std::size_t data_bytes) {
    unsigned char extra = 0;
    const std::size_t got = read(&extra, 1);
    if (got != 0)
      fail(path_, "more data than the header's dimensions announce (" + std::to_string(data_bytes) +
                      " bytes expected after the header)");
  }

 private:
  std::string path_;
  gzFile file_ = nullptr;
};

std::uint32_t big_endian(const std::array<unsigned char, 4>& b) {
  return (std::uint32_t(b[0]) << 24) | (std::uint32_t(b[1]) << 16) | (std::uint32_t(b[2]) << 8) |
         std::uint32_t(b[3]);
}

// Reads the magic number and the dimensions; checks the type (unsigned byte) and the rank.
std::vector<std::int64_t> read_header(GzReader& in, const std::string& path, int rank) {
  std::array<unsigned char, 4> word{};
  if (in.read(word.data(), 4) != 4) fail(path, "truncated: the file ends inside the header");
  const std::uint32_t magic = big_endian(word);
  const std::uint32_t expected = 0x00000800u | std::uint32_t(rank);
  if (magic != expected) {
    char buf[96];
    std::snprintf(buf, sizeof buf, "wrong magic number 0x%08X (expected 0x%08X, %s)", magic,
                  expected, rank == 3 ? "unsigned-byte images" : "unsigned-byte labels");
    fail(path, buf);
  }
  std::vector<std::int64_t> dims(static_cast<std::size_t>(rank));
  for (auto& d : dims) {
    if (in.read(word.data(), 4) != 4) fail(path, "truncated: the file ends inside the header");
    d = big_endian(word);
  }
  return dims;
}

void read_data(GzReader& in, const std::string& path, std::vector<std::uint8_t>& data,
               std::size_t bytes) {
  data.resize(bytes);
  const std::size_t got = in.read(data.data(), bytes);
  if (got != bytes)
    fail(path, "truncated: " + std::to_string(bytes) + " data bytes expected after the header, " +
                   std::to_string(got) + " found");
  in.expect_end(bytes);
}

// The .gz file if it exists, else the uncompressed one; an error names both when neither does.
std::string locate(const std::string& dir, const std::string& name) {
  const std::filesystem::path base = std::filesystem::path(dir) / name;
  const std::string gz = base.string() + ".gz";
  std::error_code ec;
  if (std::filesystem::exists(gz, ec)) return gz;
  if (std::filesystem::exists(base, ec)) return base.string();
  throw IdxError(gz + ": file not found (nor " + base.string() +
                 "); install Debian's dataset-fashion-mnist or pass --data-dir");
}

}  // namespace

IdxImages read_idx_images(const std::string& path, std::int64_t rows, std::int64_t cols) {
  GzReader in(path);
  const auto dims = read_header(in, path, 3);
  IdxImages out;
  out.count = dims[0];
  out.rows = dims[1];
  out.cols = dims[2];
  if ((rows > 0 && out.rows != rows) || (cols > 0 && out.cols != cols))
    fail(path, "wrong image dimensions " + std::to_string(out.rows) + " x " +
                   std::to_string(out.cols) + " (expected " + std::to_string(rows) + " x " +
                   std::to_string(cols) + ")");
  if (out.count <= 0 || out.rows <= 0 || out.cols <= 0)
    fail(path, "empty data set in the header (" + std::to_string(out.count) + " images)");
  read_data(in, path, out.pixels, std::size_t(out.count * out.rows * out.cols));
  return out;
}

IdxLabels read_idx_labels(const std::string& path, int num_classes) {
  GzReader in(path);
  const auto dims = read_header(in, path, 1);
  IdxLabels out;
  out.count = dims[0];
  if (out.count <= 0) fail(path, "empty data set in the header");
  read_data(in, path, out.labels, std::size_t(out.count));
  for (std::size_t i = 0; i < out.labels.size(); ++i)
    if (out.labels[i] >= num_classes)
      fail(path, "label " + std::to_string(out.labels[i]) + " of item " + std::to_string(i) +
                     " is not a class (0.." + std::to_string(num_classes - 1) + ")");
  return out;
}

Split read_split(const std::string& dir, const std::string& prefix) {
  const std::string image_path = locate(dir, prefix + "-images-idx3-ubyte");
  const std::string label_path = locate(dir, prefix + "-labels-idx1-ubyte");
  Split s;
  s.images = read_idx_images(image_path, 28, 28);
  s.labels = read_idx_labels(label_path, 10);
  if (s.images.count != s.labels.count)
    throw IdxError(label_path + ": " + std::to_string(s.labels.count) + " labels but " +
                   image_path + " holds " + std::to_string(s.images.count) + " images");
  return s;
}

}  // namespace fmnist
