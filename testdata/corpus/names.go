package corpus

import "strings"

// The lists below make user IDs. Names come in locales so that a key's name
// is plausible ("Дмитрий Иванов", not "Дмитрий Nguyễn"); every name carries
// an ASCII form for e-mail local parts. Choices inside a list are
// heavy-tailed (cubeZipf), so the first entries are common words for
// keyword search and the last ones rare. Domains are reserved names
// (RFC 2606/6761: example.org, .example, .test, .invalid), so no generated
// address can reach a real person.

// name is one given or family name.
type name struct {
	display string // UTF-8, as shown in the user ID
	ascii   string // lower-case ASCII for e-mail local parts
}

// locale is a set of given and family names of one culture.
type locale struct {
	given, family []name
	familyFirst   bool   // family name first, as in Chinese and Japanese
	sep           string // between the two names when familyFirst
	weight        ppm    // share of persons from this locale
}

func nm(display, ascii string) name { return name{display, ascii} }

// ascii-only names: the ASCII form is the lower-case display form.
func names(list string) []name {
	var out []name
	for _, w := range strings.Fields(list) {
		out = append(out, name{w, strings.ToLower(w)})
	}
	return out
}

var locales = []locale{
	{ // English
		given:  names("John David Michael James Robert Sarah Emily Jennifer Daniel Thomas Andrew Laura Mark Rachel Peter Simon Alice Kevin Hannah Brian Chris Matthew Jessica Ben Olivia"),
		family: names("Smith Johnson Williams Brown Jones Miller Davis Wilson Taylor Anderson Clark Walker Wright Hall Young King Scott Green Baker Adams Nelson Hill Campbell Mitchell Roberts"),
		weight: 330_000,
	},
	{ // German
		given: []name{nm("Thomas", "thomas"), nm("Andreas", "andreas"), nm("Stefan", "stefan"), nm("Michael", "michael"), nm("Jürgen", "juergen"),
			nm("Sabine", "sabine"), nm("Katrin", "katrin"), nm("Jörg", "joerg"), nm("Uwe", "uwe"), nm("Björn", "bjoern"), nm("Käthe", "kaethe"),
			nm("Matthias", "matthias"), nm("Ute", "ute"), nm("Lars", "lars"), nm("Günther", "guenther"), nm("Anja", "anja")},
		family: []name{nm("Müller", "mueller"), nm("Schmidt", "schmidt"), nm("Schneider", "schneider"), nm("Fischer", "fischer"),
			nm("Weber", "weber"), nm("Meyer", "meyer"), nm("Wagner", "wagner"), nm("Becker", "becker"), nm("Schäfer", "schaefer"),
			nm("Koch", "koch"), nm("Groß", "gross"), nm("Krüger", "krueger"), nm("Hoffmann", "hoffmann"), nm("Weiß", "weiss"), nm("Köhler", "koehler")},
		weight: 110_000,
	},
	{ // French
		given: []name{nm("Jean", "jean"), nm("François", "francois"), nm("Hélène", "helene"), nm("Stéphane", "stephane"), nm("Marie", "marie"),
			nm("Pierre", "pierre"), nm("Élodie", "elodie"), nm("Jérôme", "jerome"), nm("Camille", "camille"), nm("Benoît", "benoit"),
			nm("Céline", "celine"), nm("Nicolas", "nicolas"), nm("Amélie", "amelie"), nm("Loïc", "loic")},
		family: []name{nm("Martin", "martin"), nm("Bernard", "bernard"), nm("Dubois", "dubois"), nm("Lefèvre", "lefevre"), nm("Moreau", "moreau"),
			nm("Girard", "girard"), nm("Rousseau", "rousseau"), nm("Bonnet", "bonnet"), nm("Lambert", "lambert"), nm("Fontaine", "fontaine"),
			nm("Chevalier", "chevalier"), nm("Gauthier", "gauthier"), nm("Dupré", "dupre")},
		weight: 70_000,
	},
	{ // Spanish
		given: []name{nm("José", "jose"), nm("María", "maria"), nm("Javier", "javier"), nm("Lucía", "lucia"), nm("Carlos", "carlos"),
			nm("Andrés", "andres"), nm("Sofía", "sofia"), nm("Pablo", "pablo"), nm("Raúl", "raul"), nm("Elena", "elena"), nm("Iñaki", "inaki"),
			nm("Ángel", "angel")},
		family: []name{nm("García", "garcia"), nm("Fernández", "fernandez"), nm("González", "gonzalez"), nm("Rodríguez", "rodriguez"),
			nm("López", "lopez"), nm("Martínez", "martinez"), nm("Sánchez", "sanchez"), nm("Pérez", "perez"), nm("Gómez", "gomez"),
			nm("Muñoz", "munoz"), nm("Núñez", "nunez"), nm("Ortega", "ortega")},
		weight: 70_000,
	},
	{ // Portuguese (Brazil)
		given: []name{nm("João", "joao"), nm("Luís", "luis"), nm("Ana", "ana"), nm("Tiago", "tiago"), nm("Fernanda", "fernanda"),
			nm("Gonçalo", "goncalo"), nm("Mariana", "mariana"), nm("Vinícius", "vinicius"), nm("Bruno", "bruno")},
		family: []name{nm("Silva", "silva"), nm("Santos", "santos"), nm("Oliveira", "oliveira"), nm("Conceição", "conceicao"),
			nm("Gonçalves", "goncalves"), nm("Araújo", "araujo"), nm("Ribeiro", "ribeiro"), nm("Simões", "simoes")},
		weight: 40_000,
	},
	{ // Dutch
		given:  []name{nm("Jan", "jan"), nm("Pieter", "pieter"), nm("Sanne", "sanne"), nm("Joost", "joost"), nm("Marieke", "marieke"), nm("Wouter", "wouter"), nm("Eveline", "eveline"), nm("Bram", "bram")},
		family: []name{nm("de Jong", "dejong"), nm("Jansen", "jansen"), nm("de Vries", "devries"), nm("van den Berg", "vandenberg"), nm("Bakker", "bakker"), nm("Visser", "visser"), nm("Smit", "smit"), nm("van Dijk", "vandijk")},
		weight: 40_000,
	},
	{ // Polish and Czech
		given: []name{nm("Łukasz", "lukasz"), nm("Paweł", "pawel"), nm("Małgorzata", "malgorzata"), nm("Wojciech", "wojciech"), nm("Agnieszka", "agnieszka"),
			nm("Michał", "michal"), nm("Jiří", "jiri"), nm("Tomáš", "tomas"), nm("Zdeněk", "zdenek"), nm("Kateřina", "katerina")},
		family: []name{nm("Nowak", "nowak"), nm("Kowalski", "kowalski"), nm("Wiśniewski", "wisniewski"), nm("Wójcik", "wojcik"), nm("Lewandowski", "lewandowski"),
			nm("Dvořák", "dvorak"), nm("Novák", "novak"), nm("Svoboda", "svoboda"), nm("Černý", "cerny"), nm("Zieliński", "zielinski")},
		weight: 40_000,
	},
	{ // Nordic
		given: []name{nm("Søren", "soeren"), nm("Åsa", "asa"), nm("Øyvind", "oyvind"), nm("Björn", "bjorn"), nm("Ingrid", "ingrid"),
			nm("Lars", "lars"), nm("Jón", "jon"), nm("Päivi", "paivi"), nm("Mikko", "mikko"), nm("Astrid", "astrid")},
		family: []name{nm("Johansson", "johansson"), nm("Hansen", "hansen"), nm("Nielsen", "nielsen"), nm("Ødegård", "odegard"),
			nm("Lindström", "lindstrom"), nm("Åberg", "aberg"), nm("Virtanen", "virtanen"), nm("Korhonen", "korhonen"), nm("Sigurðsson", "sigurdsson")},
		weight: 40_000,
	},
	{ // Russian and Ukrainian
		given: []name{nm("Дмитрий", "dmitry"), nm("Алексей", "alexey"), nm("Ольга", "olga"), nm("Сергей", "sergey"), nm("Наталья", "natalia"),
			nm("Андрей", "andrey"), nm("Ирина", "irina"), nm("Олександр", "oleksandr"), nm("Юлія", "yuliia"), nm("Иван", "ivan")},
		family: []name{nm("Иванов", "ivanov"), nm("Смирнов", "smirnov"), nm("Кузнецов", "kuznetsov"), nm("Попов", "popov"), nm("Соколов", "sokolov"),
			nm("Шевченко", "shevchenko"), nm("Бондаренко", "bondarenko"), nm("Волков", "volkov"), nm("Лебедев", "lebedev")},
		weight: 60_000,
	},
	{ // Greek
		given:  []name{nm("Γιώργος", "giorgos"), nm("Ελένη", "eleni"), nm("Νίκος", "nikos"), nm("Μαρία", "maria"), nm("Κώστας", "kostas"), nm("Αλέξανδρος", "alexandros")},
		family: []name{nm("Παπαδόπουλος", "papadopoulos"), nm("Γεωργίου", "georgiou"), nm("Οικονόμου", "oikonomou"), nm("Νικολάου", "nikolaou"), nm("Δημητρίου", "dimitriou")},
		weight: 20_000,
	},
	{ // Turkish
		given:  []name{nm("Ayşe", "ayse"), nm("Mehmet", "mehmet"), nm("Çağrı", "cagri"), nm("Gülşen", "gulsen"), nm("Emre", "emre"), nm("Özlem", "ozlem"), nm("İbrahim", "ibrahim")},
		family: []name{nm("Yılmaz", "yilmaz"), nm("Kaya", "kaya"), nm("Demir", "demir"), nm("Çelik", "celik"), nm("Şahin", "sahin"), nm("Öztürk", "ozturk"), nm("Doğan", "dogan")},
		weight: 30_000,
	},
	{ // Vietnamese
		given:  []name{nm("Minh", "minh"), nm("Thảo", "thao"), nm("Hùng", "hung"), nm("Lan", "lan"), nm("Tuấn", "tuan"), nm("Phương", "phuong")},
		family: []name{nm("Nguyễn", "nguyen"), nm("Trần", "tran"), nm("Lê", "le"), nm("Phạm", "pham"), nm("Hoàng", "hoang"), nm("Đặng", "dang")},
		weight: 20_000,
	},
	{ // Chinese: family name first, no space
		given:       []name{nm("伟", "wei"), nm("芳", "fang"), nm("娜", "na"), nm("敏", "min"), nm("静", "jing"), nm("磊", "lei"), nm("强", "qiang"), nm("洋", "yang"), nm("晓明", "xiaoming")},
		family:      []name{nm("王", "wang"), nm("李", "li"), nm("张", "zhang"), nm("刘", "liu"), nm("陈", "chen"), nm("杨", "yang"), nm("黄", "huang"), nm("赵", "zhao")},
		familyFirst: true,
		weight:      50_000,
	},
	{ // Japanese: family name first, with a space
		given:       []name{nm("太郎", "taro"), nm("花子", "hanako"), nm("健", "ken"), nm("さくら", "sakura"), nm("大輔", "daisuke"), nm("由美", "yumi"), nm("翔太", "shota")},
		family:      []name{nm("佐藤", "sato"), nm("鈴木", "suzuki"), nm("高橋", "takahashi"), nm("田中", "tanaka"), nm("渡辺", "watanabe"), nm("伊藤", "ito"), nm("山本", "yamamoto")},
		familyFirst: true,
		sep:         " ",
		weight:      40_000,
	},
	{ // Arabic
		given:  []name{nm("محمد", "mohamed"), nm("أحمد", "ahmed"), nm("فاطمة", "fatima"), nm("علي", "ali"), nm("ليلى", "layla"), nm("يوسف", "youssef")},
		family: []name{nm("العلي", "alali"), nm("حسن", "hassan"), nm("إبراهيم", "ibrahim"), nm("الخطيب", "alkhatib"), nm("منصور", "mansour")},
		weight: 20_000,
	},
	{ // Indian, written in Latin script
		given:  names("Rahul Priya Amit Ananya Vikram Sneha Arjun Kavya Suresh Deepa"),
		family: names("Sharma Patel Singh Kumar Gupta Reddy Iyer Nair Rao Joshi"),
		weight: 20_000,
	},
}

// popularDomains are shared by many keys, so "example" and "org" are the
// most common words in the corpus, as real providers are in real dumps.
var popularDomains = []string{
	"example.org", "example.com", "example.net", "mail.example", "users.example.org", "posteo.example",
	"gmx.example", "web.example", "lists.example.net", "yandex.example", "protonmail.example", "fastmail.example",
	"mailbox.example", "riseup.example", "free.example", "t-online.example", "cs.uni-example.test", "physik.uni-example.test",
	"alumni.example.edu.test", "student.example.ac.test",
}

// words make organisation domains, nicknames and comments.
var words = strings.Fields(`debian linux kernel gnu apache mozilla openbsd freebsd python rust golang perl ruby
gentoo arch fedora ubuntu tor torproject keyserver pgp crypto security infra ops devel research lab labs net
systems cloud hosting data media press news radio design studio foundation project community coop solutions
software hardware embedded robotics physics math chemistry biology library archive museum school college
university institute clinic bank insurance energy solar wind water river mountain forest ocean north south
east west alpha beta gamma delta omega zeta nova orion atlas apollo hermes zephyr aurora phoenix falcon raven
tiger lion wolf fox otter badger panda koala dragon unicorn pixel byte bit kilo mega giga quantum vector
matrix tensor lambda kappa sigma photon proton neutron quark`)

// tlds are the suffixes of organisation and personal domains.
var tlds = []string{".example", ".example", ".example.org", ".test", ".example.net", ".invalid"}

// comments appear in parentheses in about one user ID in ten.
var comments = []string{
	"work", "personal", "code signing", "release signing key", "laptop", "home", "Debian", "university",
	"old key", "backup", "2FA", "Büro", "travail", "официальный", "仕事", "signing only", "do not use", "security team",
}
