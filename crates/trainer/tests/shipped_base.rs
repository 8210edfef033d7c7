//! The practice bases the repository ships (`crates/trainer/bases`): each is the cache entry
//! of the practice recipe for its seed, and loads and scores what its card says.

use candle_core::Device;
use clawdesk_trainer::gym::episode::load_on;
use clawdesk_trainer::gym::shipped;
use clawdesk_trainer::gym::warm_start::{
    WarmStartReport, WarmStartSettings, cache_folder, held_out_check, practice_base,
};

fn card(folder: &str) -> WarmStartReport {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("bases")
        .join(folder)
        .join("warm_start.json");
    let text = std::fs::read_to_string(&path).expect("the card");
    serde_json::from_str(&text).expect("a warm-start report")
}

#[test]
fn the_shipped_bases_are_their_recipes_cache_entries() {
    let folders: Vec<&str> = shipped::folders().collect();
    assert!(!folders.is_empty(), "no practice base is shipped");
    for folder in folders {
        let card = card(folder);
        assert_eq!(
            card.settings,
            WarmStartSettings::practice(card.settings.seed),
            "{folder} was made by another recipe than the practice one"
        );
        // A changed recipe version, setting or prompt template names another folder: the
        // base must then be made again (the README's recipe) and shipped under the new name.
        assert_eq!(
            cache_folder(&card.settings).expect("key"),
            folder,
            "the practice recipe for seed {} no longer names the shipped base",
            card.settings.seed
        );
    }
}

#[test]
fn a_shipped_base_is_unpacked_rather_than_trained_and_scores_what_its_card_says() {
    let cache = tempfile::tempdir().expect("tempdir");
    for folder in shipped::folders() {
        let card = card(folder);
        let (dir, report) = practice_base(cache.path(), &card.settings, &mut |_| {
            panic!("the shipped base {folder} was trained instead of unpacked")
        })
        .expect("the shipped base");
        assert_eq!(dir, cache.path().join(folder));
        assert_eq!(report, card);
        let loaded = load_on(&dir, &Device::Cpu).expect("the shipped base loads");
        let (without, with) = held_out_check(&loaded, &card.settings).expect("check");
        // Greedy decoding of the same weights; one task of 60 may flip on another CPU's
        // rounding, no more.
        let tolerance = 1.0 / 60.0 + 1e-9;
        assert!(
            (without - card.success_without_hint).abs() <= tolerance,
            "{folder}: {without} without the hint, the card says {}",
            card.success_without_hint
        );
        assert!(
            (with - card.success_with_hint).abs() <= tolerance,
            "{folder}: {with} with the hint, the card says {}",
            card.success_with_hint
        );
    }
}
