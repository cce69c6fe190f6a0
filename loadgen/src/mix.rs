//! The workloads: which operation a client calls next, as tables of weights.

use rand::Rng;
use std::fmt;

/// A seller's operations after CreateAccount and Login.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SellerOp {
    /// List a new item: 1-5 keywords, a skewed category, price, units.
    Register,
    /// Change the price of one of its items.
    ChangePrice,
    /// Take units off sale; a seller with more than 8 items on sale clears its
    /// oldest.
    RemoveUnits,
    /// Put units back on sale (also re-lists a sold-out item), unless more than
    /// 8 are on sale (then it clears its oldest instead).
    Restock,
    /// DisplayItemsForSale.
    Display,
    /// GetSellerRating.
    Rating,
}

/// A buyer's operations after CreateAccount and Login.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BuyerOp {
    /// A popular or rare category, 0-5 keywords, sometimes a later page.
    Search,
    /// An item seen in a search.
    GetItem,
    /// 1-2 units of an item seen in a search.
    AddToCart,
    /// A unit of an item in the cart.
    RemoveFromCart,
    DisplayCart,
    SaveCart,
    ClearCart,
    /// Thumbs up or down on an item seen in a search.
    Vote,
    /// The rating of the seller of an item seen in a search.
    SellerRating,
    /// GetBuyerPurchases.
    History,
}

/// A named workload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mix {
    /// The realistic default.
    Default,
    /// Mostly browsing: searches and item views.
    Browse,
    /// The original course evaluation (PA1 operations only, fixed sequences).
    Seed,
    /// Buyers search only, in the query shapes of the catalogue
    /// (`--catalogue`): the hot keyword (first and later pages), the warm one,
    /// two keywords, five, and none. Sellers as in the default.
    Search,
    /// Sellers only list items (a catalogue loaded through the API, kept on
    /// sale); buyers as in the default.
    Register,
}

/// The default seller weights.
pub const SELLER_DEFAULT: &[(SellerOp, u32)] = &[
    (SellerOp::Register, 20),
    (SellerOp::ChangePrice, 15),
    (SellerOp::RemoveUnits, 20),
    (SellerOp::Restock, 5),
    (SellerOp::Display, 25),
    (SellerOp::Rating, 15),
];

/// Sellers that only list items.
pub const SELLER_REGISTER: &[(SellerOp, u32)] = &[(SellerOp::Register, 1)];

/// The default buyer weights.
pub const BUYER_DEFAULT: &[(BuyerOp, u32)] = &[
    (BuyerOp::Search, 30),
    (BuyerOp::GetItem, 15),
    (BuyerOp::AddToCart, 12),
    (BuyerOp::RemoveFromCart, 5),
    (BuyerOp::DisplayCart, 10),
    (BuyerOp::SaveCart, 3),
    (BuyerOp::ClearCart, 2),
    (BuyerOp::Vote, 10),
    (BuyerOp::SellerRating, 8),
    (BuyerOp::History, 5),
];

/// Browsing: sellers as in the default, buyers mostly looking.
pub const BUYER_BROWSE: &[(BuyerOp, u32)] = &[
    (BuyerOp::Search, 55),
    (BuyerOp::GetItem, 30),
    (BuyerOp::AddToCart, 5),
    (BuyerOp::DisplayCart, 5),
    (BuyerOp::Vote, 3),
    (BuyerOp::SellerRating, 2),
];

impl Mix {
    /// Parses `default`, `browse` or `seed`.
    pub fn parse(s: &str) -> Option<Mix> {
        match s {
            "default" => Some(Mix::Default),
            "browse" => Some(Mix::Browse),
            "seed" => Some(Mix::Seed),
            "search" => Some(Mix::Search),
            "register" => Some(Mix::Register),
            _ => None,
        }
    }

    /// The name it is chosen by.
    pub fn name(self) -> &'static str {
        match self {
            Mix::Default => "default",
            Mix::Browse => "browse",
            Mix::Seed => "seed",
            Mix::Search => "search",
            Mix::Register => "register",
        }
    }

    /// Seller weights (empty for the fixed sequences of `seed`).
    pub fn seller(self) -> &'static [(SellerOp, u32)] {
        match self {
            Mix::Default | Mix::Browse | Mix::Search => SELLER_DEFAULT,
            Mix::Register => SELLER_REGISTER,
            Mix::Seed => &[],
        }
    }

    /// Buyer weights (empty for the fixed sequences of `seed`).
    pub fn buyer(self) -> &'static [(BuyerOp, u32)] {
        match self {
            Mix::Default | Mix::Register => BUYER_DEFAULT,
            Mix::Browse => BUYER_BROWSE,
            Mix::Seed | Mix::Search => &[],
        }
    }
}

/// Picks from a weighted table.
pub fn pick<T: Copy>(rng: &mut impl Rng, table: &[(T, u32)]) -> T {
    let total: u32 = table.iter().map(|(_, w)| w).sum();
    let mut at = rng.gen_range(0..total.max(1));
    for (item, weight) in table {
        if at < *weight {
            return *item;
        }
        at -= weight;
    }
    table[table.len() - 1].0
}

fn percent<T: fmt::Debug>(table: &[(T, u32)]) -> String {
    let total: u32 = table.iter().map(|(_, w)| w).sum();
    table
        .iter()
        .map(|(op, w)| format!("{op:?} {:.0}%", f64::from(*w) * 100.0 / f64::from(total)))
        .collect::<Vec<_>>()
        .join(", ")
}

impl fmt::Display for Mix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Mix::Seed => write!(
                f,
                "mix seed (the course evaluation): sellers CreateAccount, Login, then repeat \
                 [RegisterItemForSale keywords [keyword1, keyword2] in category i%5, \
                 ChangeItemPrice, UpdateUnitsForSale -5 of 10], Logout; buyers CreateAccount, \
                 Login, then repeat [SearchItemsForSale category i%5 [keyword1], GetItem (i%5)+1, \
                 ProvideFeedback on it, GetSellerRating of its seller, DisplayCart], Logout"
            ),
            Mix::Search => write!(
                f,
                "mix search: buyers CreateAccount, Login, then SearchItemsForSale in category 0 \
                 (limit 50), each shape in turn: [hot] page 1, [hot] a later page (2-20), \
                 [warm], [warm k3], [k1 k2 k3 k4 k5], no keyword; Logout. Sellers: {}",
                percent(SELLER_DEFAULT)
            ),
            Mix::Register => write!(
                f,
                "mix register: sellers CreateAccount, Login, then RegisterItemForSale only \
                 (1-5 keywords, items kept on sale), Logout; buyers: {}",
                percent(BUYER_DEFAULT)
            ),
            mix => write!(
                f,
                "mix {}: every client CreateAccount, Login, then:\n  sellers: {}\n  buyers:  {}\n  \
                 sellers keep at most 8 items on sale and take the rest off sale before Logout",
                mix.name(),
                percent(mix.seller()),
                percent(mix.buyer())
            ),
        }
    }
}

/// 40 keywords of at most 8 characters; low indexes are picked more often.
pub const VOCABULARY: &[&str] = &[
    "mug", "lamp", "chair", "table", "book", "pen", "phone", "laptop", "desk", "bag", "shoe",
    "shirt", "hat", "watch", "ring", "bike", "toy", "game", "cup", "plate", "knife", "fork",
    "spoon", "bed", "sofa", "rug", "clock", "radio", "camera", "guitar", "drum", "piano", "ball",
    "bat", "glove", "tent", "boat", "kite", "vase", "coat",
];

/// Number of categories the workload uses.
pub const CATEGORIES: i64 = 20;

/// A skewed pick in `0..n`: index i is picked with probability falling with i
/// (the square of a uniform draw), so a few are popular and most are rare.
pub fn skewed(rng: &mut impl Rng, n: usize) -> usize {
    let u: f64 = rng.gen();
    ((u * u) * n as f64) as usize % n.max(1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn picks_follow_the_weights_and_skew_favours_low_indexes() {
        let mut rng = rand::rngs::SmallRng::seed_from_u64(7);
        let mut seen = [0u32; 2];
        for _ in 0..10_000 {
            seen[pick(&mut rng, &[(0usize, 1), (1, 3)])] += 1;
        }
        assert!((7_000..8_000).contains(&seen[1]), "{seen:?}");
        let mut low = 0;
        for _ in 0..10_000 {
            if skewed(&mut rng, 20) < 5 {
                low += 1;
            }
        }
        assert!(
            low > 4_500,
            "a quarter of the categories get about half the picks: {low}"
        );
        assert!(VOCABULARY.iter().all(|w| w.len() <= 8));
    }

    #[test]
    fn every_mix_prints_its_weights() {
        let text = Mix::Default.to_string();
        assert!(
            text.contains("Register 20%") && text.contains("Search 30%"),
            "{text}"
        );
        assert!(Mix::Seed.to_string().contains("keyword1"));
        assert_eq!(Mix::parse("browse"), Some(Mix::Browse));
        assert_eq!(Mix::parse("register"), Some(Mix::Register));
        assert!(Mix::Register
            .to_string()
            .contains("RegisterItemForSale only"));
        assert_eq!(Mix::parse("nope"), None);
    }
}
