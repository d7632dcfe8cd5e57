package generate

import "github.com/shopspring/decimal"

type product struct {
	sku, name, category string
	price               string // unit sale price in the order currency, ≥ 5.00
	giftCard            bool
}

// catalog is a small retailer's range; every non-gift-card price is ≥ 5.00 so that after the
// largest coupon (20 %) and redemption (30 %) every eligible unit is still worth ≥ 1 currency unit.
var catalog = []product{
	{"APP-JKT-0142", "Waxed cotton jacket", "apparel/outerwear", "149.00", false},
	{"APP-SHT-0311", "Oxford shirt", "apparel/shirts", "39.95", false},
	{"APP-TEE-0020", "Organic cotton T-shirt", "apparel/tops", "14.99", false},
	{"APP-JNS-0507", "Slim fit jeans", "apparel/denim", "69.00", false},
	{"APP-SCK-0009", "Merino socks 3-pack", "apparel/socks", "19.99", false},
	{"FTW-SNK-1201", "Running sneaker", "footwear/sport", "89.95", false},
	{"FTW-BOT-1330", "Chelsea boot", "footwear/boots", "129.00", false},
	{"ACC-BLT-2002", "Leather belt", "accessories/belts", "34.50", false},
	{"ACC-BAG-2210", "Canvas tote bag", "accessories/bags", "24.00", false},
	{"ACC-CAP-2105", "Baseball cap", "accessories/hats", "17.99", false},
	{"HOM-MUG-3001", "Stoneware mug", "home/kitchen", "9.50", false},
	{"HOM-CND-3120", "Scented candle", "home/decor", "22.00", false},
	{"HOM-TWL-3205", "Bath towel", "home/bath", "27.99", false},
	{"HOM-LMP-3410", "Desk lamp", "home/lighting", "59.00", false},
	{"BTY-SRM-4020", "Face serum 30ml", "beauty/skincare", "32.00", false},
	{"BTY-SHP-4101", "Shampoo 500ml", "beauty/hair", "7.95", false},
	{"ELE-EBD-5001", "Wireless earbuds", "electronics/audio", "79.99", false},
	{"ELE-CBL-5102", "USB-C cable 2m", "electronics/cables", "12.99", false},
	{"ELE-PWB-5120", "Power bank 10000mAh", "electronics/power", "39.00", false},
	{"TOY-PZL-6001", "1000-piece puzzle", "toys/puzzles", "18.50", false},
}

var giftCards = []product{
	{"GC-0025", "Gift card 25", "gift-cards", "25.00", true},
	{"GC-0050", "Gift card 50", "gift-cards", "50.00", true},
	{"GC-0100", "Gift card 100", "gift-cards", "100.00", true},
}

type currency struct {
	code    string
	country string
	region  string
	taxCode string
	taxRate decimal.Decimal
	carrier []string
	weight  int
}

var currencies = []currency{
	{"EUR", "DE", "BE", "VAT-DE-STD", decimal.RequireFromString("0.19"), []string{"DHL", "DPD", "Hermes"}, 55},
	{"GBP", "GB", "ENG", "VAT-GB-STD", decimal.RequireFromString("0.20"), []string{"Royal Mail", "DPD UK", "Evri"}, 25},
	{"USD", "US", "NY", "ST-US-NY", decimal.RequireFromString("0.08875"), []string{"UPS", "FedEx", "USPS"}, 20},
}

type tier struct {
	code   string
	weight int
	// wrong is the multiplier a misconfigured loyalty platform posts (always higher).
	wrong decimal.Decimal
}

var tiers = []tier{
	{"BASE", 50, decimal.RequireFromString("1.25")},
	{"SILVER", 25, decimal.RequireFromString("1.5")},
	{"GOLD", 17, decimal.NewFromInt(2)},
	{"PLATINUM", 8, decimal.RequireFromString("2.5")},
}

var (
	channels    = []string{"WEB", "WEB", "WEB", "APP", "APP", "STORE", "CALL_CENTER", "MARKETPLACE"}
	shipNodes   = []string{"DC-NORTH", "DC-SOUTH", "DC-WEST", "STORE-0117", "STORE-0342"}
	returnWhy   = []string{"SIZE", "CHANGED_MIND", "DAMAGED", "NOT_AS_DESCRIBED", "LATE_DELIVERY"}
	cancelWhy   = []string{"customer", "inventory", "fraud", "declined", "staff", "other"}
	couponCodes = []string{"WELCOME10", "SPRING15", "FREESHIP", "VIP20", "SAVE5"}
)
