//! How a file is cut into multipart-upload parts.

/// S3's smallest part (except the last).
pub const MIN_PART_SIZE: u64 = 5 * 1024 * 1024;
/// S3's largest part count.
pub const MAX_PARTS: u64 = 10_000;
/// kiln's default part size: large enough for throughput, small enough to keep a few in memory.
pub const DEFAULT_PART_SIZE: u64 = 16 * 1024 * 1024;

const MIB: u64 = 1024 * 1024;

/// The parts of one file: equal `part_size` parts and a shorter last one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartPlan {
    /// The file's size.
    pub file_size: u64,
    /// The size of every part but the last.
    pub part_size: u64,
}

impl PartPlan {
    /// The plan for `file_size` bytes with parts of about `wanted` bytes: at least
    /// [`MIN_PART_SIZE`], and grown (to a whole MiB) so there are never more than
    /// [`MAX_PARTS`] parts.
    pub fn new(file_size: u64, wanted: u64) -> Self {
        let smallest_fitting = file_size.div_ceil(MAX_PARTS).div_ceil(MIB) * MIB;
        let part_size = wanted.max(MIN_PART_SIZE).max(smallest_fitting);
        Self {
            file_size,
            part_size,
        }
    }

    /// How many parts (at least one, even for an empty file).
    pub fn count(&self) -> u64 {
        self.file_size.div_ceil(self.part_size).max(1)
    }

    /// Offset and length of part `index` (0-based).
    pub fn part(&self, index: u64) -> (u64, u64) {
        let offset = index * self.part_size;
        (offset, self.part_size.min(self.file_size - offset))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_parts_are_raised_to_the_s3_minimum() {
        let plan = PartPlan::new(100 * MIB, 1024);
        assert_eq!(plan.part_size, MIN_PART_SIZE);
        assert_eq!(plan.count(), 20);
    }

    #[test]
    fn a_huge_file_never_needs_more_than_ten_thousand_parts() {
        let one_tib = 1024 * 1024 * MIB;
        let plan = PartPlan::new(one_tib, DEFAULT_PART_SIZE);
        assert!(plan.count() <= MAX_PARTS, "{} parts", plan.count());
        assert_eq!(plan.part_size % MIB, 0);
        assert_eq!(plan.part_size, 105 * MIB);
        let (offset, len) = plan.part(plan.count() - 1);
        assert_eq!(offset + len, one_tib);
    }

    #[test]
    fn the_last_part_holds_the_remainder() {
        let plan = PartPlan::new(2 * DEFAULT_PART_SIZE + 7, DEFAULT_PART_SIZE);
        assert_eq!(plan.count(), 3);
        assert_eq!(plan.part(0), (0, DEFAULT_PART_SIZE));
        assert_eq!(plan.part(2), (2 * DEFAULT_PART_SIZE, 7));
        assert_eq!(PartPlan::new(0, DEFAULT_PART_SIZE).count(), 1);
    }
}
