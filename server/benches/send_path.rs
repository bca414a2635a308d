//! What the server does once per message, before fan-out: the safety checks
//! (crisis terms, personal details, blocklist) on typical texts.
//!
//! `cargo bench -p kindred-server --bench send_path`

use criterion::{Criterion, criterion_group, criterion_main};
use kindred_server::safety::{Safety, SafetyConfig};
use std::hint::black_box;

const TEXTS: &[(&str, &str)] = &[
    ("short", "thank you, that helps"),
    ("typical", "It has been three months since we lost her and some days I still set out two cups in the morning. Does that ever stop?"),
    (
        "long",
        "I wanted to say thank you all for being here tonight. It helps to not feel alone with it. My brother's birthday is next week and \
              I keep thinking about what to do, whether to visit the grave or go somewhere we used to go together. Last year I stayed home \
              and that felt worse. Maybe I'll take the train to the coast like we did when we were kids. Anyway, thanks for listening.",
    ),
    ("loadtest", "kl-abcdefghijklmnop thank you all for being here tonight it helps to not feel alone with it"),
    ("non_ascii", "It’s been three months since we lost her 💔 and some days I still set out two cups — does that ever stop? Merci à tous."),
    ("crisis", "honestly some nights I just want to die and I don't know who to tell"),
];

fn safety(c: &mut Criterion) {
    let safety = Safety::new(SafetyConfig { blocklist: vec!["buy followers".into(), "crypto giveaway".into()], ..SafetyConfig::default() })
        .expect("the default terms compile");
    let mut group = c.benchmark_group("safety_check");
    for (name, text) in TEXTS {
        group.bench_function(*name, |b| b.iter(|| safety.check(black_box(text), "en")));
    }
    group.finish();
}

criterion_group!(benches, safety);
criterion_main!(benches);
