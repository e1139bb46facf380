//! Parse + validate a 1 MB recipe (hundreds of provisioners). Target: under 50 ms.
//! Run: `cargo bench --bench recipe_parse`.

use std::hint::black_box;
use std::path::Path;

use criterion::{Criterion, criterion_group, criterion_main};
use kiln::recipe::template::{LoadOptions, load_str};

/// A realistic recipe of about `target_bytes`: one qemu builder, many shell provisioners with
/// interpolated inline commands, and an exoscale-import chain.
fn big_recipe(target_bytes: usize) -> String {
    let mut provisioners = Vec::new();
    let mut size = 0;
    let mut i = 0;
    while size < target_bytes {
        let lines: Vec<String> = (0..20)
            .map(|j| format!("\"echo step {i}.{j} {{{{user `greeting`}}}} on {{{{build_name}}}} >> /var/log/kiln-{i}.log\""))
            .collect();
        let p = format!(
            "{{\"type\": \"shell\", \"environment_vars\": [\"STEP={i}\", \"NAME={{{{user `greeting`}}}}\"], \"execute_command\": \"sudo {{{{.Vars}}}} sh {{{{.Path}}}}\", \"inline\": [{}]}}",
            lines.join(", ")
        );
        size += p.len();
        provisioners.push(p);
        i += 1;
    }
    format!(
        r#"{{
  "_comment": "generated for the benchmark",
  "variables": {{"greeting": "hello", "bucket": "images", "stamp": "{{{{timestamp}}}}"}},
  "builders": [{{"type": "qemu", "disk_image": true, "iso_url": "file:///tmp/base.qcow2",
    "iso_checksum": "none", "ssh_username": "debian", "disk_size": "10G",
    "qemuargs": [["-cpu", "qemu64,rdrand=on"], ["-netdev", "user,id=n0,hostfwd=tcp::{{{{ .SSHHostPort }}}}-:22"]]}}],
  "provisioners": [{}],
  "post-processors": [[{{"type": "checksum", "checksum_types": ["sha256"]}},
    {{"type": "exoscale-import", "image_bucket": "{{{{user `bucket`}}}}", "template_name": "bench {{{{user `stamp`}}}}"}}]]
}}"#,
        provisioners.join(",\n")
    )
}

fn parse_and_validate(c: &mut Criterion) {
    let text = big_recipe(1024 * 1024);
    let options = LoadOptions::default();
    let recipe = load_str("bench.json", &text, Path::new("/tmp"), &options)
        .expect("the benchmark recipe is valid");
    eprintln!(
        "recipe: {} bytes, {} provisioners",
        text.len(),
        recipe.builds[0].provisioners.len()
    );
    c.bench_function("parse+validate 1 MB recipe", |b| {
        b.iter(|| {
            load_str("bench.json", black_box(&text), Path::new("/tmp"), &options)
                .map(|r| r.builds.len())
        })
    });
}

criterion_group!(benches, parse_and_validate);
criterion_main!(benches);
