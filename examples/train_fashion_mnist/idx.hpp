// Reader for the IDX files of (Fashion-)MNIST, gzip-compressed or raw (zlib reads both).
//
// IDX layout (big-endian): a 4-byte magic 0x00 0x00 <type> <rank> (type 0x08 = unsigned byte),
// `rank` 4-byte dimensions, then the data in row-major order.  Images are rank 3
// (count x rows x cols, magic 0x00000803), labels rank 1 (count, magic 0x00000801).
//
// Every failure throws IdxError with the file's path and what is wrong: missing or unreadable,
// wrong magic number, unexpected dimensions, truncated data, or bytes after the data.
#pragma once

#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

namespace fmnist {

class IdxError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

/// `count` images of rows x cols bytes (0 = background, 255 = ink), one after another.
struct IdxImages {
  std::int64_t count = 0, rows = 0, cols = 0;
  std::vector<std::uint8_t> pixels;
};

/// `count` labels.
struct IdxLabels {
  std::int64_t count = 0;
  std::vector<std::uint8_t> labels;
};

/// Reads an image file.  `rows` / `cols` > 0 are required values (else any size is accepted).
IdxImages read_idx_images(const std::string& path, std::int64_t rows = 0, std::int64_t cols = 0);
/// Reads a label file; every label must be < num_classes.
IdxLabels read_idx_labels(const std::string& path, int num_classes = 10);

/// One split of the data set: images (28 x 28) with their labels.
struct Split {
  IdxImages images;
  IdxLabels labels;
};

/// Reads <dir>/<prefix>-images-idx3-ubyte[.gz] and <dir>/<prefix>-labels-idx1-ubyte[.gz]
/// (prefix "train" or "t10k"), preferring the .gz file; checks that the counts agree.
Split read_split(const std::string& dir, const std::string& prefix);

/// Debian's dataset-fashion-mnist package installs the files here.
inline const char* kDefaultDataDir = "/usr/share/datasets/fashion-mnist";

}  // namespace fmnist
