-- item_keywords indexes only items with units for sale, so keyword search costs
-- what the live catalogue holds, not every item ever listed. A trigger keeps it
-- in step with items: keywords enter when an item is listed with units or
-- restocked from zero, and leave when it sells out.

CREATE FUNCTION sync_item_keywords() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' OR (OLD.quantity = 0 AND NEW.quantity > 0) THEN
        IF NEW.quantity > 0 THEN
            INSERT INTO item_keywords (category, keyword, item_id)
            SELECT NEW.category, kw, NEW.item_id FROM unnest(NEW.keywords) AS kw;
        END IF;
    ELSIF OLD.quantity > 0 AND NEW.quantity = 0 THEN
        DELETE FROM item_keywords
         WHERE category = NEW.category AND keyword = ANY (NEW.keywords)
           AND item_id = NEW.item_id;
    END IF;
    RETURN NULL;
END $$;

CREATE TRIGGER items_sync_keywords
AFTER INSERT OR UPDATE OF quantity ON items
FOR EACH ROW EXECUTE FUNCTION sync_item_keywords();

DELETE FROM item_keywords k USING items i
 WHERE i.item_id = k.item_id AND i.quantity = 0;
