//! Artifacts: the files a build or a post-processor produced, as the next post-processor, the
//! summary and the front ends see them (Packer's `Artifact`).

use std::path::{Path, PathBuf};

/// What the qemu builder's artifact is called in Packer's manifests (`artifact_id`).
pub const BUILDER_ARTIFACT_ID: &str = "VM";

/// The files one build step or post-processor produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Artifact {
    /// Who produced it: `qemu` for the builder, else the post-processor's type.
    pub producer: String,
    /// Packer's artifact id (`VM` for the qemu builder; manifests record it).
    pub id: String,
    /// The files, main file first.
    pub files: Vec<PathBuf>,
}

impl Artifact {
    /// The qemu builder's artifact: the finished disk image.
    pub fn builder(image: impl Into<PathBuf>) -> Self {
        Artifact {
            producer: "qemu".into(),
            id: BUILDER_ARTIFACT_ID.into(),
            files: vec![image.into()],
        }
    }

    /// The main file (the image, the archive), if the artifact has files.
    pub fn main_file(&self) -> Option<&Path> {
        self.files.first().map(PathBuf::as_path)
    }
}
