-- DisplayItemsForSale reads a seller's items with units for sale. Sellers
-- keep listing and selling out, so most of a long-lived seller's rows are
-- sold out: through items_seller (seller_id, item_id) the listing fetched and
-- dropped every one of them (about 200 rows, 0.24 ms, for a seller of the
-- default load mix after one run; the tenth of product_db's statement time
-- in a durable 100x100 run, pg_stat_statements). This index holds the items
-- on sale only, so the listing costs what it shows. quantity is already in
-- the predicate of items_category_available, so no update that was HOT
-- stops being one.
CREATE INDEX items_seller_available ON items (seller_id, item_id) WHERE quantity > 0;
